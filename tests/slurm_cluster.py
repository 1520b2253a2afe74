"""A real single-node SLURM cluster for tests: slurmctld and slurmd from the Debian packages, run as root with all
their state under one directory, fake GPUs as character devices, and no accounting.

Anything that stops the cluster from coming up on this machine (not root, no apt-get, no network for the install, a
daemon that dies) skips the test with the reason; a configuration SLURM rejects is a bug here and fails it.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Collection, Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
BINARIES = ("slurmctld", "slurmd", "sbatch", "munged")
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
MUNGE_KEY = Path("/etc/munge/munge.key")
MUNGE_RUN = Path("/run/munge")
READY_SECONDS = 30.0
STOP_SECONDS = 10.0
# slurmstepd binds a Unix socket "<spool>/<node>_<job>.<step>" and such paths are limited to 107 bytes.
MAX_SPOOL_CHARS = 80
SLURM_PREFIXES = ("SLURM_", "SBATCH_", "SALLOC_", "SRUN_")
FINAL_STATES = frozenset({"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED",
                          "BOOT_FAIL", "DEADLINE"})  # fmt: skip

PR_SET_PDEATHSIG = 1
LIBC = ctypes.CDLL(None, use_errno=True)

Daemon = subprocess.Popen[bytes]


@dataclass(frozen=True)
class SlurmCluster:
    """A running one-node cluster: `env` is what a subprocess (sbatch, squeue, snakemake) needs to use it."""

    conf: Path
    node: str
    cpus: int
    real_memory_mb: int
    gpus: int
    env: dict[str, str]

    def run(self, *command: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Runs a SLURM client command against this cluster; a non-zero exit raises with its output."""
        result = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise AssertionError(f"{' '.join(command)} exited {result.returncode}: {result.stdout}{result.stderr}")
        return result

    def job_details(self, job_id: str | int) -> dict[str, str]:
        """`scontrol show job -o <id>` as key=value pairs (e.g. TresPerJob, TimeLimit, Account, Partition, JobState)."""
        return _job_record(self.run("scontrol", "show", "job", "-o", str(job_id)).stdout)

    def jobs(self) -> list[dict[str, str]]:
        """Every job slurmctld still knows (running, or ended less than MinJobAge ago), as job_details gives one."""
        listing = self.run("scontrol", "show", "job", "-o").stdout
        return [_job_record(line) for line in listing.splitlines() if line.startswith("JobId=")]

    def wait(self, job_id: str | int, states: Collection[str] = FINAL_STATES, timeout: float = 60.0) -> str:
        """Polls slurmctld until the job is in one of `states` (by default, any final one) and returns that state;
        faster than `sbatch --wait`, which polls every 2 to 10 s."""
        deadline = time.monotonic() + timeout
        while (state := self.job_details(job_id)["JobState"]) not in states:
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} is still {state} after {timeout:.0f} s, not {sorted(states)}")
            time.sleep(0.1)
        return state


def _job_record(line: str) -> dict[str, str]:
    """One line of `scontrol show job -o` as key=value pairs; a word without "=" continues the previous value, which
    keeps values with spaces (commands, reasons) whole."""
    details: dict[str, str] = {}
    key = ""
    for word in line.split():
        name, sep, value = word.partition("=")
        if sep and name:
            key = name
            details[key] = value
        elif key:
            details[key] += " " + word
    return details


def _skip(reason: str, output: str = "") -> None:
    """Skips the test with `reason` and the last non-empty line of a command's output."""
    lines = [line for line in output.strip().splitlines() if line.strip()]
    pytest.skip(f"{reason}: {lines[-1]}" if lines else reason)


def _which(binary: str) -> str | None:
    """The path of `binary`, looking in the sbin directories too (the daemons live there)."""
    return shutil.which(binary, path=SEARCH_PATH)


def ensure_installed() -> None:
    """Installs the SLURM and munge packages with apt-get when their binaries are missing, or skips the test."""
    if all(_which(binary) for binary in BINARIES):
        return
    if os.geteuid() != 0:
        _skip("SLURM is not installed and installing it needs root")
    if _which("apt-get") is None:
        _skip("SLURM is not installed and there is no apt-get to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES]
    result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=600)
    if result.returncode != 0 and any(
        hint in result.stderr for hint in ("Unable to locate package", "has no installation candidate", "404")
    ):
        update = subprocess.run(["apt-get", "update"], env=env, capture_output=True, text=True, timeout=600)
        if update.returncode != 0:
            _skip("apt-get update failed", update.stderr)
        result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        _skip(f"{' '.join(install)} exited {result.returncode}", result.stderr or result.stdout)
    missing = [binary for binary in BINARIES if _which(binary) is None]
    if missing:
        _skip(f"the SLURM packages are installed but {', '.join(missing)} cannot be found")


def _munge_works() -> bool:
    """Whether a munged answers: `munge -n | unmunge` succeeds."""
    if _which("munge") is None or _which("unmunge") is None:
        return False
    credential = subprocess.run(["munge", "-n"], capture_output=True, timeout=10)
    if credential.returncode != 0:
        return False
    return subprocess.run(["unmunge"], input=credential.stdout, capture_output=True, timeout=10).returncode == 0


@contextmanager
def _munge() -> Iterator[None]:
    """Reuses a working munged, or runs one as the munge user for the duration and stops exactly that process."""
    if _munge_works():
        yield
        return
    if not MUNGE_KEY.exists():
        create = subprocess.run([_which("mungekey") or "mungekey", "--create", "--keyfile", str(MUNGE_KEY)],
                                capture_output=True, text=True, timeout=30)  # fmt: skip
        if create.returncode != 0:
            _skip(f"no {MUNGE_KEY} and mungekey could not create one", create.stderr)
        shutil.chown(MUNGE_KEY, "munge", "munge")
        MUNGE_KEY.chmod(0o400)
    MUNGE_RUN.mkdir(mode=0o755, exist_ok=True)
    shutil.chown(MUNGE_RUN, "munge", "munge")
    munged = _spawn([str(_which("munged")), "--foreground"], user="munge", group="munge",
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not _munge_works():
            if munged.poll() is not None:
                _skip(f"munged exited {munged.returncode}", munged.communicate()[1].decode(errors="replace"))
            if time.monotonic() > deadline:
                _skip("munged started but `munge -n | unmunge` still fails after 10 s")
            time.sleep(0.1)
        yield
    finally:
        _stop(munged)


def _die_with_parent() -> None:
    """Runs in a daemon before exec: the kernel sends it SIGTERM when the test process dies, even by SIGKILL."""
    LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _spawn(command: list[str], **options: Any) -> Daemon:
    """A daemon in its own session (a Ctrl-C reaches the test, whose exit stops it in order) that dies with us."""
    return subprocess.Popen(command, start_new_session=True, preexec_fn=_die_with_parent, **options)


def _stop(process: Daemon) -> None:
    """Ends one process we started: SIGTERM, then SIGKILL if it outlives STOP_SECONDS."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _free_port() -> int:
    """A TCP port free on 127.0.0.1 now, so that two clusters (or a real SLURM) do not collide on 6817/6818."""
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _memory_mb() -> int:
    """MemTotal in MB."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError("no MemTotal in /proc/meminfo")


def write_config(state_dir: Path, node: str, cpus: int, real_memory_mb: int, gpus: int) -> Path:
    """slurm.conf and gres.conf (slurmd reads it from the directory of slurm.conf) plus the fake GPU devices.

    DefMemPerCPU: a job without --mem would otherwise hold all the node's memory, so jobs would run one at a time.
    batch_sched_delay=0: a batch job starts about 1 s after sbatch instead of 3 s. MailProg: slurmctld logs an error
    when Debian's default (/usr/bin/mail) is missing. No AccountingStorageTRES=gres/gpu: without slurmdbd slurmctld
    refuses it, so a job's TRES has no gres/gpu and the GPU request shows as TresPerJob / TresPerNode instead."""
    spool = state_dir / "d"
    if len(str(spool)) > MAX_SPOOL_CHARS:
        raise ValueError(f"state_dir {state_dir} is too long for slurmstepd's Unix sockets; use a shorter path")
    for directory in (spool, state_dir / "ctld"):
        directory.mkdir(parents=True, exist_ok=True)
    devices = [state_dir / f"fakegpu{index}" for index in range(gpus)]
    for device in devices:
        if not device.exists():
            os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # a character device like /dev/null
    conf = state_dir / "slurm.conf"
    conf.write_text(f"""\
ClusterName=nextrl-test
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
AuthType=auth/munge
StateSaveLocation={state_dir / "ctld"}
SlurmdSpoolDir={spool}
SlurmctldPidFile={state_dir / "slurmctld.pid"}
SlurmdPidFile={state_dir / "slurmd.pid"}
SlurmctldLogFile={state_dir / "slurmctld.log"}
SlurmdLogFile={state_dir / "slurmd.log"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MailProg=/bin/true
MinJobAge=300
SchedulerParameters=batch_sched_delay=0
ReturnToService=2
GresTypes=gpu
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={real_memory_mb}{f" Gres=gpu:{gpus}" if gpus else ""} \
State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")
    gres = "".join(f"NodeName={node} Name=gpu File={device}\n" for device in devices)
    (state_dir / "gres.conf").write_text(gres)
    return conf


def _fail_or_skip(what: str, state_dir: Path, name: str, lines: int = 15) -> None:
    """A daemon that died or never got ready: a configuration it refused fails the test, anything else skips it.

    In the foreground a daemon copies its log to stderr, which also holds what it says before opening its log file
    (a configuration it cannot parse); both end in <name>.out."""
    out = state_dir / f"{name}.out"
    tail = "\n".join(out.read_text(errors="replace").strip().splitlines()[-lines:]) if out.exists() else ""
    if any("fatal:" in line and "configuration" in line for line in tail.splitlines()):
        raise RuntimeError(f"{what}: SLURM rejected the configuration written in {state_dir}\n{tail}")
    pytest.skip(f"{what}; {out} ends with:\n{tail or '(nothing)'}")


def _start(stack: ExitStack, state_dir: Path, name: str, arguments: list[str], env: dict[str, str]) -> Daemon:
    """Starts a daemon in the foreground (-D), so that its pid is known for certain, and registers its stop."""
    with (state_dir / f"{name}.out").open("wb") as out:
        process = _spawn([str(_which(name)), "-D", *arguments], env=env, stdout=out, stderr=out)
    stack.callback(_stop, process)
    return process


def _wait_idle(cluster: SlurmCluster, state_dir: Path, daemons: dict[str, Daemon]) -> None:
    """Waits until sinfo shows the node usable, failing or skipping as soon as a daemon dies."""
    deadline = time.monotonic() + READY_SECONDS
    state = ""
    while state not in ("idle", "mixed", "allocated"):
        for name, process in daemons.items():
            if process.poll() is not None:
                _fail_or_skip(f"{name} exited {process.returncode} before the node was ready", state_dir, name)
        if time.monotonic() > deadline:
            _fail_or_skip(f"node {cluster.node} is still {state or 'unknown'} after {READY_SECONDS:.0f} s",
                          state_dir, "slurmd")  # fmt: skip
        try:  # a client retries for about 9 s while the controller is not listening yet
            sinfo = subprocess.run(["sinfo", "-h", "-n", cluster.node, "-o", "%T"], env=cluster.env,
                                   capture_output=True, text=True, timeout=READY_SECONDS)  # fmt: skip
        except subprocess.TimeoutExpired:
            continue
        state = sinfo.stdout.strip().rstrip("*~#$@+-^!%")
        time.sleep(0.1)


def _cancel_all(cluster: SlurmCluster, slurmctld: Daemon) -> None:
    """Cancels the jobs left and waits for them to end, so that no job outlives the cluster. Skipped when slurmctld
    is gone: every client would retry for about 9 s."""
    if slurmctld.poll() is not None:
        return
    subprocess.run(["scancel", "--partition", "debug"], env=cluster.env, capture_output=True, timeout=30)
    deadline = time.monotonic() + STOP_SECONDS
    while time.monotonic() < deadline:
        squeue = subprocess.run(["squeue", "-h", "-o", "%i"], env=cluster.env, capture_output=True, text=True,
                                timeout=30)  # fmt: skip
        if squeue.returncode != 0 or not squeue.stdout.strip():
            return
        time.sleep(0.1)


def cluster_env(conf: Path) -> dict[str, str]:
    """This process's environment for a client of the cluster at `conf`: SLURM_CONF set, the sbin directories on
    PATH, and no SLURM_*/SBATCH_*/SALLOC_*/SRUN_* variables of an enclosing job (sbatch would read them as options).

    Inside a job, Snakemake's jobstep plugin runs `srun` with every SLURM_* variable but the job's identity removed,
    SLURM_CONF included, which a site's /etc/slurm/slurm.conf never notices; first on PATH here, <conf dir>/bin/srun
    puts it back (this cluster's conf stays out of /etc)."""
    wrappers = conf.parent / "bin"
    wrappers.mkdir(exist_ok=True)
    srun = wrappers / "srun"
    srun.write_text(
        f'#!/bin/sh\nSLURM_CONF="${{SLURM_CONF:-{conf}}}" exec {shutil.which("srun", path=SEARCH_PATH)} "$@"\n'
    )
    srun.chmod(0o755)
    inherited = {key: value for key, value in os.environ.items() if not key.startswith(SLURM_PREFIXES)}
    return {**inherited, "SLURM_CONF": str(conf), "PATH": os.pathsep.join([str(wrappers), SEARCH_PATH])}


@contextmanager
def local_slurm(state_dir: Path, gpus: int = 2) -> Iterator[SlurmCluster]:
    """A running one-node cluster with `gpus` fake GPUs and all its files under `state_dir` (keep it short).

    Installs SLURM if needed, starts munged (unless one works), slurmctld and slurmd, and yields once the node is
    idle; on exit, even an interrupted one, cancels the jobs left and stops exactly the processes it started."""
    ensure_installed()
    state_dir.mkdir(parents=True, exist_ok=True)
    node = socket.gethostname().split(".")[0]
    cpus = os.cpu_count() or 1
    real_memory_mb = int(_memory_mb() * 0.8)
    conf = write_config(state_dir, node, cpus, real_memory_mb, gpus)
    env = cluster_env(conf)
    cluster = SlurmCluster(conf=conf, node=node, cpus=cpus, real_memory_mb=real_memory_mb, gpus=gpus, env=env)
    with ExitStack() as stack:
        stack.enter_context(_munge())
        slurmctld = _start(stack, state_dir, "slurmctld", ["-c", "-f", str(conf)], env)
        slurmd = _start(stack, state_dir, "slurmd", ["-N", node, "-f", str(conf)], env)
        stack.callback(_cancel_all, cluster, slurmctld)
        _wait_idle(cluster, state_dir, {"slurmctld": slurmctld, "slurmd": slurmd})
        yield cluster
