"""One GPU per job on a workstation: a lease on k of the machine's devices, taken before torch or vLLM is imported.

Snakemake counts ``gpu`` as a resource (``--resources gpu=4``) but assigns no device (docs/gpu.md, "Snakemake on GPUs"),
so each GPU job leases its own: device d is held by an exclusive ``flock`` on ``<lock_dir>/gpu<d>.lock`` for the
life of the process (the kernel drops it when the process ends, killed or not, so no lease outlives its job), and
the job sees only its devices through ``CUDA_VISIBLE_DEVICES``. Under a scheduler that already set
``CUDA_VISIBLE_DEVICES`` (SLURM does for ``--gpus``) there is nothing to lease. The machine's devices are
``NEXTRL_GPUS`` (a comma-separated list) or, without it, the ``nvidia-smi -L`` list; the lock directory is
``NEXTRL_GPU_LOCK_DIR`` or ``<tmp>/nextrl-gpu-locks``.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO


class LeaseError(RuntimeError):
    """No device can be leased; the message says how many were asked for and what the machine has."""


def machine_devices(environ: Mapping[str, str]) -> list[str]:
    """The devices jobs share: ``NEXTRL_GPUS``, or one per line of ``nvidia-smi -L``; none without either."""
    if environ.get("NEXTRL_GPUS"):
        return [device.strip() for device in environ["NEXTRL_GPUS"].split(",") if device.strip()]
    if shutil.which("nvidia-smi") is None:
        return []
    listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False).stdout
    return [str(index) for index, line in enumerate(listing.splitlines()) if line.startswith("GPU ")]


def require_devices(count: int, devices: Sequence[str], who: str) -> None:
    """A LeaseError when ``who`` (a job, or a config key's jobs) needs more GPUs than ``devices`` holds."""
    if count > len(devices):
        raise LeaseError(
            f"{who} needs {count} GPU(s) but this machine has {len(devices)} ({', '.join(devices) or 'none'}; set "
            "NEXTRL_GPUS to list them, set the request to 0, or run through a scheduler: workflow/profiles/slurm)"
        )


def check_machine_has(requests: Mapping[str, int], environ: Mapping[str, str]) -> None:
    """Before a local run starts: every job's GPU request (config key → GPUs per job) fits this machine's devices;
    a LeaseError names the first key that asks for more."""
    devices = machine_devices(environ)
    for key, count in requests.items():
        require_devices(count, devices, f"config key {key}: each such job")


def lock_directory(environ: Mapping[str, str]) -> Path:
    return Path(environ.get("NEXTRL_GPU_LOCK_DIR") or Path(tempfile.gettempdir()) / "nextrl-gpu-locks")


class Lease:
    """Devices held by this process: their lock files stay open until :meth:`release`, the process ends, or the
    Lease is garbage-collected (closing the files), so keep a reference for as long as the job uses the devices."""

    def __init__(self, devices: list[str], handles: list[IO[str]]) -> None:
        self.devices = devices
        self._handles = handles

    def release(self) -> None:
        for handle in self._handles:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
        self._handles = []


def lease(count: int, devices: Sequence[str], lock_dir: Path, timeout_s: float, poll_s: float = 0.5) -> Lease:
    """Hold ``count`` of ``devices`` (the first free ones), waiting up to ``timeout_s`` for others to finish."""
    require_devices(count, devices, "resources.gpu: the job")
    lock_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    while True:
        held: list[tuple[str, IO[str]]] = []
        for device in devices:
            handle = (lock_dir / f"gpu{device}.lock").open("a")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            held.append((device, handle))
            if len(held) == count:
                return Lease([device for device, _ in held], [handle for _, handle in held])
        Lease([], [handle for _, handle in held]).release()
        if time.monotonic() >= deadline:
            raise LeaseError(f"no {count} free GPU(s) among {list(devices)} within {timeout_s:g} s ({lock_dir})")
        time.sleep(poll_s)


def lease_for_job(count: int, environ: dict[str, str], timeout_s: float = 3600.0) -> Lease | None:
    """Lease ``count`` devices and set ``CUDA_VISIBLE_DEVICES`` in ``environ`` (call it before importing torch);
    None when the job needs no GPU or a scheduler already chose its devices."""
    if count == 0 or "CUDA_VISIBLE_DEVICES" in environ:
        return None
    held = lease(count, machine_devices(environ), lock_directory(environ), timeout_s)
    environ["CUDA_VISIBLE_DEVICES"] = ",".join(held.devices)
    return held
