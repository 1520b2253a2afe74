"""MLflow tracking: jobs queue their records without importing MLflow; one process logs the queue and empties it."""

import subprocess
import sys
import time

import numpy as np
import pandas as pd

from nextrl.jobs.tracking import StageRecord, log_queued, queue_record, tracking_uri


def test_a_stage_job_queues_its_record_without_importing_mlflow(tmp_path):
    check = (
        "import sys; from pathlib import Path; from nextrl.jobs.tracking import StageRecord, queue_record\n"
        f"queue_record(Path({str(tmp_path)!r}), 'fit', {{'arm': 'next'}}, StageRecord(metrics={{'loss': 0.5}}), 0.0)\n"
        "print('mlflow' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "False"
    assert len(list((tmp_path / "tracking").glob("*.json"))) == 1


def test_queued_records_become_one_mlflow_run_each_and_leave_the_queue(tmp_path):
    import mlflow

    experiment = tmp_path / "demo"
    steps = pd.DataFrame({"step": [1, 2, 3], "reward_mean": np.array([0.1, 0.2, 0.4], dtype=np.float32)})
    (tmp_path / "table.csv").write_text("a\n1\n")
    record = StageRecord(metrics={"final": np.float64(0.4)}, params={"rl": {"lr": 2e-4}}, step_metrics=steps,
                         artifacts=[tmp_path / "table.csv", tmp_path / "gone.csv"])  # fmt: skip
    queue_record(experiment, "rl_chunk", {"arm": "none", "seed": 0, "round": 1}, record, started=1_700_000_000.5)
    queue_record(experiment, "data", {"arm": "shared"}, StageRecord(metrics={"rows": 60}), started=time.time())
    assert log_queued(experiment) == 2
    assert not list((experiment / "tracking").glob("*.json")) and log_queued(experiment) == 0
    client = mlflow.MlflowClient(tracking_uri=tracking_uri(experiment))
    runs = client.search_runs([client.get_experiment_by_name("demo").experiment_id])
    by_stage = {run.data.tags["stage"]: run for run in runs}
    assert set(by_stage) == {"rl_chunk", "data"}
    rl = by_stage["rl_chunk"]
    assert rl.info.run_name == "none/seed0/round1/rl_chunk"
    assert rl.info.start_time == 1_700_000_000_500 and rl.info.end_time > rl.info.start_time  # the job's, not the log's
    assert rl.data.params == {"rl.lr": "0.0002"} and rl.data.metrics["final"] == 0.4
    history = client.get_metric_history(rl.info.run_id, "reward_mean")
    assert [(m.step, round(m.value, 6)) for m in history] == [(1, 0.1), (2, 0.2), (3, 0.4)]
    assert [a.path for a in client.list_artifacts(rl.info.run_id)] == ["table.csv"]
    assert by_stage["data"].data.metrics == {"rows": 60.0}
