"""GPU leases on fake devices: k jobs share N devices, each sees only its own, a killed job frees its device."""

import os
import signal
import subprocess
import sys
import time

import pytest

from nextrl.jobs.device_lease import LeaseError, check_machine_has, lease, lease_for_job, machine_devices


def test_leases_split_the_devices_and_wait_for_a_free_one(tmp_path):
    first = lease(1, ["0", "1", "2"], tmp_path, timeout_s=0)
    second = lease(2, ["0", "1", "2"], tmp_path, timeout_s=0)
    assert first.devices == ["0"] and second.devices == ["1", "2"]
    with pytest.raises(LeaseError, match=r"no 1 free GPU\(s\) among \['0', '1', '2'\] within 0.2 s"):
        lease(1, ["0", "1", "2"], tmp_path, timeout_s=0.2, poll_s=0.05)
    first.release()
    assert lease(1, ["0", "1", "2"], tmp_path, timeout_s=0).devices == ["0"]


def test_a_job_sees_only_its_devices_and_a_scheduler_choice_is_kept(tmp_path):
    environ = {"NEXTRL_GPUS": "0,1,2,3", "NEXTRL_GPU_LOCK_DIR": str(tmp_path)}
    assert machine_devices(environ) == ["0", "1", "2", "3"]
    held = lease_for_job(2, environ, timeout_s=0)
    assert held is not None and environ["CUDA_VISIBLE_DEVICES"] == "0,1"
    other = {"NEXTRL_GPUS": "0,1,2,3", "NEXTRL_GPU_LOCK_DIR": str(tmp_path)}
    assert lease_for_job(1, other, timeout_s=0) is not None and other["CUDA_VISIBLE_DEVICES"] == "2"
    slurm = {"CUDA_VISIBLE_DEVICES": "5", "NEXTRL_GPUS": "0"}
    assert lease_for_job(1, slurm) is None and slurm["CUDA_VISIBLE_DEVICES"] == "5"
    assert lease_for_job(0, {"NEXTRL_GPUS": "0"}) is None


def test_asking_for_more_gpus_than_the_machine_has_is_named(tmp_path):
    with pytest.raises(LeaseError, match=r"resources.gpu: the job needs 3 GPU\(s\) but this machine has 2 \(0, 1;"):
        lease_for_job(3, {"NEXTRL_GPUS": "0,1", "NEXTRL_GPU_LOCK_DIR": str(tmp_path)})


def test_a_killed_job_frees_its_device(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from nextrl.jobs.device_lease import lease; "
         f"held = lease(1, ['0'], Path({str(tmp_path)!r}), 0); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(LeaseError):
        lease(1, ["0"], tmp_path, timeout_s=0)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    time.sleep(0.1)
    assert lease(1, ["0"], tmp_path, timeout_s=5).devices == ["0"]


def test_a_local_run_asking_more_gpus_than_the_machine_has_names_the_key():
    check_machine_has({"resources.train.gpu": 2, "resources.fit.gpu": 0}, {"NEXTRL_GPUS": "0,1"})
    with pytest.raises(LeaseError, match=r"config key resources.fit.gpu: each such job needs 3 GPU\(s\) but .* has 2"):
        check_machine_has({"resources.train.gpu": 2, "resources.fit.gpu": 3}, {"NEXTRL_GPUS": "0,1"})
