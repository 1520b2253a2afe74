"""End to end: the Snakemake DAG on config/test.yaml (plain RL and three extrapolators, two rounds), kill-and-resume,
bad input rejected before anything runs or by the stage that meets it, lint, profiles."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import load_file

from nextrl.analysis.figures import FIGURES
from tests.workflow_runs import ENV, REPO, SNAKEMAKE, assert_same_outputs, snakemake, workdir

ARMS = {"none", "next", "linear", "repeat_last", "none_fast", "none_full"}
PLAIN = {"none", "none_fast", "none_full"}


def test_end_to_end_covers_every_arm_and_two_rounds(finished_run: Path):
    from nextrl.extrapolators import REGISTRY

    summary = finished_run / "summary"
    per_seed = pd.read_parquet(summary / "per_seed.parquet")
    assert set(per_seed["arm"]) == ARMS
    # steps saved: a number for every arm on every seed, against none and the fastest plain arm
    assert per_seed[["equivalent_steps", "steps_saved", "speedup", "steps_saved_fastest"]].notna().all().all()
    for name in FIGURES:
        assert (finished_run / "figures" / f"{name}.png").stat().st_size > 10_000, name
        assert (finished_run / "figures" / f"{name}.pdf").exists(), name
    assert "\\begin{tabular}" in (summary / "table.tex").read_text()
    ablation = pd.read_csv(summary / "ablation.csv")
    assert list(ablation["arm"]) == ["none", "next", "none_fast", "none_full"]
    assert list(ablation["training"]) == ["lora", "lora", "lora", "full"]
    findings = (summary / "findings.md").read_text()
    assert "E1 = σ1/Σσ of the LoRA update" in findings and "E1 = σ1/Σσ of the full-parameter update" in findings
    assert "Linear-fit R²" in findings
    # test.yaml: 8 modules, 4 snapshots (fit 2, predict 2), in `next`'s round 0 (LoRA) and `none_full`'s
    linearity = pd.read_parquet(summary / "linearity.parquet")
    assert linearity.groupby("training").size().to_dict() == {"full": 8, "lora": 8}
    assert set(linearity["fit_snapshots"]) == {2} and linearity["r2"].notna().all()
    energy = pd.read_parquet(summary / "energy.parquet")
    assert set(energy["training"]) == {"lora", "full"} and energy["e1_mean"].between(0, 1, inclusive="right").all()
    full_state = finished_run / "none_full" / "seed0" / "round1" / "rl" / "state"
    assert (full_state / "model" / "model.safetensors").exists() and not (full_state / "adapter").exists()
    assert "test_accuracy_ci95" in (summary / "table.md").read_text()
    curves = pd.read_parquet(summary / "curves.parquet")
    assert curves.groupby("arm")["round"].nunique().to_dict() == dict.fromkeys(ARMS, 2)
    assert curves["step"].max() == 8
    for arm in ARMS - PLAIN:
        selection = pd.read_parquet(finished_run / arm / "seed0" / "round0" / "jump" / "selected" / "selection.parquet")
        assert 0.0 in set(selection["alpha"]) and selection["selected"].sum() == 1
        assert (selection.loc[selection["selected"], "accuracy"] == selection["accuracy"].max()).all()
    trajectory = pd.read_parquet(finished_run / "next" / "seed0" / "round0" / "trajectory.parquet")
    assert set(trajectory["kind"]) == {"global", "local", "target", "round"}
    heldout = pd.read_csv(summary / "heldout.csv")
    assert list(heldout["method"]) == list(REGISTRY)  # every method, the trivial baseline included
    assert (heldout["pairs"] + heldout["rounds_failed"] > 0).all()
    assert "repeat_last is the trivial baseline" in (summary / "heldout.md").read_text()
    probe = pd.read_csv(summary / "probe.csv")  # round 0 once (shared), round 1 per arm
    # a plain variant runs its own round 0; the probe rays LoRA factors, so a full-parameter arm has none
    expected = [("none", 0), ("none_fast", 0), *((arm, 1) for arm in ARMS - {"none_full"})]
    assert sorted(zip(probe["arm"], probe["round"], strict=True)) == sorted(expected)
    assert set(probe["rises_beyond_1"]) <= {True, False}
    metrics = pd.read_parquet(finished_run / "none" / "seed0" / "round1" / "rl" / "metrics.parquet")
    assert list(metrics["step"]) == [5, 6, 7, 8]
    assert set(metrics["lr"]) == {2.0e-3}
    for round_index in (0, 1):  # the variant's own learning rate, in both rounds
        fast = pd.read_parquet(finished_run / "none_fast" / "seed0" / f"round{round_index}" / "rl" / "metrics.parquet")
        assert set(fast["lr"]) == {4.0e-3}
    table = pd.read_csv(summary / "table.csv").set_index("arm")
    assert set(table["fastest_plain"]) <= PLAIN and table["icer"].notna().all()
    assert table.loc[sorted(PLAIN), "acceleration"].isna().all()
    assert table.loc[["next", "linear", "repeat_last"], "acceleration"].isin([True, False]).all()
    # no staging leftovers anywhere
    assert not [p for p in finished_run.rglob(".*.tmp")]


def test_figures_redraw_from_parquet_alone_and_the_report_bundles_them(finished_run: Path):
    directory = finished_run.parents[1]
    redraw = snakemake(
        directory, "--cores", "2", "figures", "--forcerun", "summary"
    )  # a target after --configfile's list
    ran = [
        line.split()[1].rstrip(":") for line in redraw.stderr.splitlines() if line.startswith(("rule ", "localrule "))
    ]
    assert set(ran) == {"summary", "figures", "figure"}  # no RL, evaluation or model stage
    assert ran.count("figure") == len(FIGURES)
    snakemake(directory, "--report", "results/test/report.html")
    report = (finished_run / "report.html").read_text()
    for name in FIGURES:
        assert f"{name}.png" in report, name


def import_run(directory: Path, name: str, run_dir: Path, base: Path, arms: list[str], **options: object) -> Path:
    """Run the workflow on an imported run (config `import`) over config/test.yaml; returns its results directory."""
    settings = {"experiment": name, "arms": arms, "seeds": [0], "rounds": 1,
                "import": {"run_dir": str(run_dir), "base_model": str(base), **options}}  # fmt: skip
    (directory / f"{name}.yaml").write_text(yaml.safe_dump(settings))
    snakemake(directory, "--cores", "2", "--configfile", "config/test.yaml", f"{name}.yaml")
    return directory / "results" / name


def test_imported_verl_and_trl_runs_give_the_workflows_own_trajectory(finished_run: Path, tmp_path: Path):
    from peft import PeftModel

    from nextrl.models import load_model
    from tests.test_foreign_run import layout_tree

    own = finished_run / "next" / "seed0" / "round0"
    directory = workdir(tmp_path)
    accuracy = tmp_path / "accuracy.csv"  # the run's validation accuracy per step, as a trainer would log it
    pd.DataFrame({"step": [0, 1, 2, 3, 4], "accuracy": [0.1, 0.2, 0.25, 0.3, 0.42]}).to_csv(accuracy, index=False)
    base_files = {path.name: path.read_bytes() for path in (finished_run / "base").iterdir() if path.is_file()}
    verl = import_run(directory, "import_verl", layout_tree(own / "rl" / "snapshots", tmp_path / "verl", "verl"),
                      finished_run / "base", ["next", "linear", "alpharl"], accuracy=str(accuracy),
                      merge=True)  # fmt: skip
    trl = import_run(directory, "import_trl", layout_tree(own / "rl" / "snapshots", tmp_path / "trl", "hf_trainer"),
                     finished_run / "base", ["next", "linear"], evaluate=True)  # fmt: skip
    # the user's base model directory is read, never rewritten
    assert {path.name: path.read_bytes() for path in (finished_run / "base").iterdir() if path.is_file()} == base_files
    expected = pd.read_parquet(own / "trajectory.parquet")
    for imported in (verl, trl):
        pd.testing.assert_frame_equal(pd.read_parquet(imported / "next" / "seed0" / "round0" / "trajectory.parquet"),
                                      expected)  # fmt: skip
        for arm in ("next", "linear"):
            assert (imported / arm / "seed0" / "round0" / "jump" / "candidates" / "candidates.parquet").exists()
        assert not (imported / "none").exists() and not (imported / "base").exists()  # no RL job, no base built
    assert sorted(p.name for p in (verl / "figures").glob("*.png")) == ["energy.png", "linearity.png"]
    evaluated = {f"{name}.png" for name in FIGURES} - {"curves.png", "steps.png"}
    assert {p.name for p in (trl / "figures").glob("*.png")} == evaluated
    assert (trl / "next" / "seed0" / "round0" / "jump" / "selected" / "selection.parquet").exists()
    # alpha 0 merged is the run's last snapshot merged by peft itself
    merged = load_file(verl / "next" / "seed0" / "round0" / "jump" / "merged" / "alpha_0" / "model.safetensors")
    reference = PeftModel.from_pretrained(load_model(finished_run / "base"), own / "rl" / "state" / "adapter")
    reference_weights = reference.merge_and_unload().state_dict()
    assert all(torch.allclose(merged[key], reference_weights[key], atol=1e-6) for key in merged)
    assert pd.read_parquet(verl / "alpharl" / "seed0" / "round0" / "rl" / "eval.parquet")["accuracy"].tolist() == (
        pd.read_csv(accuracy)["accuracy"].tolist()
    )
    assert (verl / "alpharl" / "seed0" / "round0" / "jump" / "candidates" / "candidates.parquet").exists()


def test_an_unrecognised_run_directory_is_named_and_leaves_nothing(finished_run: Path, tmp_path: Path):
    directory = workdir(tmp_path)
    (tmp_path / "not_a_run" / "logs").mkdir(parents=True)
    with pytest.raises(AssertionError):
        import_run(directory, "import_bad", tmp_path / "not_a_run", finished_run / "base", ["next"])
    log = (directory / "results" / "import_bad" / "logs" / "import_run" / "next_seed0_round0.log").read_text()
    assert "import.run_dir" in log and "no LoRA snapshots in a recognised layout" in log
    assert not (directory / "results" / "import_bad" / "next" / "seed0" / "round0" / "rl").exists()


def test_full_parameter_experiment_jumps_from_dense_deltas(tmp_path: Path):
    """config/full.yaml's shape on the CI model: every arm trains every weight; the jump arms fit dense deltas."""
    directory = workdir(tmp_path)
    settings = {"experiment": "test_full", "arms": ["none", "linear", "repeat_last"], "rl": {"mode": "full"}}
    (directory / "full.yaml").write_text(yaml.safe_dump(settings))
    snakemake(directory, "--cores", "2", "--configfile", "config/test.yaml", "full.yaml")
    results = directory / "results" / "test_full"
    for arm in ("linear", "repeat_last"):
        round1 = results / arm / "seed0" / "round1"
        selection = pd.read_parquet(results / arm / "seed0" / "round0" / "jump" / "selected" / "selection.parquet")
        jumped = selection.loc[selection["selected"], "alpha"].item() != 0
        start_rows = pd.read_parquet(round1 / "rl" / "eval.parquet").query("step == 4")  # evaluated after a jump
        assert len(start_rows) == int(jumped) and (round1 / "rl" / "state" / "model").is_dir()
        assert (round1 / "test.parquet").exists()
    trajectory = pd.read_parquet(results / "linear" / "seed0" / "round0" / "trajectory.parquet")
    assert trajectory.groupby("kind")["k"].max().to_dict() == dict.fromkeys(["global", "local", "round", "target"], 0)
    assert set(pd.read_parquet(results / "summary" / "energy.parquet")["training"]) == {"full"}
    heldout = pd.read_parquet(results / "linear" / "seed0" / "round0" / "heldout.parquet")
    assert heldout["rank1_cosine"].notna().any()
    assert set(pd.read_csv(results / "summary" / "ablation.csv")["training"]) == {"full"}


def test_the_paper_config_plans_its_dag_with_gpu_jobs(tmp_path: Path):
    """config/qwen2.5-1.5b.yaml as shipped, on stand-ins for the model and the math file: the plan needs no GPU and
    no vLLM (a login node plans for GPU nodes); the job that builds an engine names the missing vLLM."""
    from nextrl.models import build_char_tokenizer, build_tiny_model, save_model

    directory = workdir(tmp_path)
    tokenizer = build_char_tokenizer()
    shape = {"hidden_size": 16, "intermediate_size": 32, "num_layers": 1, "num_heads": 2, "num_kv_heads": 1,
             "max_positions": 32}  # fmt: skip
    save_model(build_tiny_model(tokenizer, shape, seed=0), tokenizer, directory / "models" / "Qwen2.5-1.5B-Instruct")
    (directory / "data").mkdir()
    (directory / "data" / "math.jsonl").write_text("".join(f'{{"question": "{i}+1", "answer": "{i + 1}"}}\n'
                                                           for i in range(200)))  # fmt: skip
    plan = snakemake(
        directory, "-n", "--cores", "32", "--resources", "gpu=4", "--configfile", "config/qwen2.5-1.5b.yaml"
    )
    jobs = plan.stdout[plan.stdout.index("Job stats:") :]
    assert "rl_chunk                 6" in jobs and "select                   4" in jobs
    for rule in ("rl_chunk", "select", "evaluate_test"):
        block = plan.stdout[plan.stdout.index(f"rule {rule}:") :].split("\n\n")[0]
        assert "gpu=1" in block, rule
    data_block = plan.stdout[plan.stdout.index("rule data:") :].split("\n\n")[0]
    assert "gpu=0" in data_block


def test_mlflow_groups_stages_seeds_and_rounds(finished_run: Path):
    import mlflow

    from nextrl.jobs.tracking import tracking_uri

    assert not list((finished_run / "tracking").glob("*")), "the Snakemake process logs every queued record"
    client = mlflow.MlflowClient(tracking_uri=tracking_uri(finished_run))
    experiment = client.get_experiment_by_name("test")
    runs = client.search_runs([experiment.experiment_id], max_results=200)
    stages = {(r.data.tags.get("arm"), r.data.tags.get("round"), r.data.tags["stage"]) for r in runs}
    expected = {("none", "0", "rl_chunk"), ("none", "1", "rl_chunk"), ("next", "0", "fit"), ("next", "0", "select"),
                ("next", "1", "evaluate"), ("next", "0", "heldout")}  # fmt: skip
    assert expected <= stages
    rl_run = next(r for r in runs if r.data.tags["stage"] == "rl_chunk" and r.data.tags["round"] == "1")
    assert len(client.get_metric_history(rl_run.info.run_id, "reward_mean")) == 4


def test_killed_rl_job_leaves_nothing_partial_and_rerun_matches(finished_run: Path, tmp_path: Path):
    """Plain RL's two rounds and their test evaluation (one target of config/test.yaml's DAG), killed mid-way through
    round 1 and run again."""
    directory = workdir(tmp_path)
    target = "results/test/none/seed0/round1/test.parquet"
    command = [*SNAKEMAKE, "--directory", str(directory), "--configfile", "config/test.yaml", "--cores", "1", target]
    process = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True, cwd=directory)  # fmt: skip
    round1 = directory / "results" / "test" / "none" / "seed0" / "round1"
    deadline = time.time() + 600
    while time.time() < deadline and not any(round1.glob(".rl.*.tmp/rl/snapshots/step_6")):
        time.sleep(0.05)
    assert any(round1.glob(".rl.*.tmp")), "the round-1 RL chunk never started"
    os.killpg(process.pid, signal.SIGKILL)  # kill Snakemake and the running chunk mid-way
    process.wait()
    assert not (round1 / "rl").exists()  # the partial chunk is invisible at the final path
    snakemake(directory, "--unlock")  # a SIGKILLed Snakemake leaves its lock behind
    snakemake(directory, "--cores", "2", target)
    assert (directory / target).is_file() and not list((directory / "results").rglob(".*.tmp"))
    assert_same_outputs(directory / "results" / "test", finished_run, part=True)


def test_lint_is_clean(tmp_path: Path):
    result = snakemake(workdir(tmp_path), "--lint")
    assert "Lints for" not in result.stdout + result.stderr


SLURM_PROFILE = str(REPO / "workflow" / "profiles" / "slurm")
SITE = ("--default-resources", "slurm_account=ci", "slurm_partition=debug")  # README "Running on SLURM"


def test_slurm_profile_plans_the_same_dag_with_the_configs_resources(tmp_path: Path):
    directory = workdir(tmp_path)
    local = snakemake(directory, "-n", "--cores", "2")
    slurm = snakemake(directory, "-n", "--workflow-profile", SLURM_PROFILE, *SITE)

    def job_table(text: str) -> str:
        return text[text.index("Job stats:") :].split("\n\n")[0]

    assert job_table(local.stdout) == job_table(slurm.stdout)
    # round 0 is shared by none and the jump arms: none, none_fast and none_full run 2 chunks each, the jump arms 1
    assert "rl_chunk                 9" in job_table(local.stdout)
    assert "share_first_round        3" in job_table(local.stdout)
    # config/test.yaml's resources, per kind, and the site's account and partition
    asked = {"rl_chunk": "mem_mb=1500", "select": "mem_mb=1200", "fit": "mem_mb=800", "trajectory": "mem_mb=900"}
    for rule, memory in asked.items():
        block = slurm.stdout[slurm.stdout.index(f"rule {rule}:") :].split("\n\n")[0]
        assert memory in block and "slurm_account=ci" in block and "slurm_partition=debug" in block, block


def test_the_slurm_profile_without_its_plugin_is_named_before_anything_runs(tmp_path: Path):
    """Snakemake's own error, before the Snakefile is read: the executor `slurm` is not among those installed."""
    hide_plugin = (
        "import pkgutil, sys; modules = pkgutil.iter_modules; "
        "pkgutil.iter_modules = lambda *a: (m for m in modules(*a) if 'executor_plugin_slurm' not in m.name); "
        "from snakemake.cli import main; sys.argv[0] = 'snakemake'; main()"
    )
    directory = workdir(tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", hide_plugin, "-s", str(REPO / "workflow" / "Snakefile"), "--directory", str(directory),
         "--workflow-profile", SLURM_PROFILE, "--configfile", "config/test.yaml", *SITE],
        capture_output=True, text=True, env=ENV, timeout=300, cwd=directory,
    )  # fmt: skip
    assert result.returncode != 0
    assert "argument --executor/-e: invalid choice: 'slurm' (choose from 'local', 'dryrun', 'touch')" in result.stderr
    assert not (directory / "results").exists() and not (directory / ".snakemake").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rl": {"chunk_steps": 0}}, "chunk_steps"),
        ({"rl": {"snapshot_every": 3}}, "rl.snapshot_every: 3 does not divide rl.chunk_steps 4"),
        ({"task": {"dataset": "no_such_task"}}, "no_such_task"),
        ({"model": {"source": "local", "path": "missing/model"}}, "model.path"),
        ({"arms": ["none", "nexxt"]}, "config key arms: unknown arm 'nexxt'"),
        ({"extrapolators": {"next": {"epochs": "many"}}}, "extrapolators.next.epochs: 'many' is not of type 'integer'"),
        ({"task": {"params": {"min_digits": "one"}}}, "task.params.min_digits: 'one' is not of type"),
        ({"task": {"split_seeds": {"selection": 1000010}}}, "task.split_seeds.validation: 1000003 is within 7"),
        ({"resources": {"weights": {"mem_mb": -5}}}, "resources.weights.mem_mb: -5 is less than the minimum of 1"),
        ({"resources": {"train": {"runtime": "2h"}}}, "resources.train.runtime: '2h' is not of type 'integer'"),
        # a workstation without GPUs (CI): stopped in onstart, before any job
        ({"resources": {"evaluate": {"gpu": 1}}}, "resources.evaluate.gpu: each such job needs 1 GPU(s) but"),
    ],
)
def test_bad_config_is_rejected_before_anything_runs(tmp_path: Path, change: dict, message: str):
    directory = workdir(tmp_path)
    config = yaml.safe_load((directory / "config" / "test.yaml").read_text())
    for section, values in change.items():
        if isinstance(values, dict):
            for key, value in values.items():
                config[section][key] = {**config[section][key], **value} if isinstance(value, dict) else value
        else:
            config[section] = values
    (directory / "config" / "test.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(directory, "--cores", "1", check=False)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert not (directory / "results").exists()


def test_alpharl_without_per_snapshot_evaluations_fails_cleanly(finished_run: Path, tmp_path: Path):
    round0 = finished_run / "next" / "seed0" / "round0"
    evaluations = pd.read_parquet(round0 / "rl" / "eval.parquet")
    evaluations[evaluations["step"] != 2].to_parquet(tmp_path / "eval.parquet")
    config = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "nextrl.cli", "fit", "--configfile", str(tmp_path / "config.yaml"),
               "--experiment-dir", str(tmp_path), "--trajectory", str(round0 / "trajectory.parquet"),
               "--evaluations", str(tmp_path / "eval.parquet"), "--output", str(tmp_path / "predictor"),
               "--method", "alpharl", "--arm", "alpharl", "--seed", "0", "--round", "0"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=ENV, cwd=REPO, timeout=300)
    assert result.returncode == 1
    assert "nextrl fit: error: alpharl" in result.stderr and "[2]" in result.stderr
    assert not (tmp_path / "predictor").exists() and not list(tmp_path.glob(".predictor*"))


def test_a_fresh_variant_restarts_its_adapter_after_the_jump(tmp_path: Path):
    directory = workdir(tmp_path)
    config = yaml.safe_load((directory / "config" / "test.yaml").read_text())
    config["arms"] = ["none", "next", "next_fresh"]
    config["variants"] = {"next_fresh": {"of": "next", "jump": {"continuation": "fresh"}}}
    (directory / "config" / "test.yaml").write_text(yaml.safe_dump(config))
    targets = [f"results/test/{arm}/seed0/round1/probe.parquet" for arm in ("next", "next_fresh")]
    planned = snakemake(directory, "-n", "-p", "--cores", "1", *targets).stdout
    probes = {arm: line for line in planned.splitlines() if " probe " in line for arm in ("next", "next_fresh")
              if f"--arm {arm} " in line}  # fmt: skip
    assert "--start-adapter=results/test/next/seed0/round0/rl/state/adapter " in probes["next"]
    assert "--start-adapter= " in probes["next_fresh"]
    assert '"continuation": "fresh"' in probes["next_fresh"] and '"continuation": "carry"' in probes["next"]
    assert "share_first_round" in planned  # the variant's round 0 is none's chunk


@pytest.mark.parametrize(
    ("probe", "probed"),
    [
        ("every_round", {"none/seed0/round0", "none/seed0/round1", "next/seed0/round1"}),
        ("all_but_last", {"none/seed0/round0"}),  # round 0 of `next` is none's chunk, probed there
        ("off", set()),
    ],
)
def test_the_probe_key_chooses_the_probed_rounds(tmp_path: Path, probe: str, probed: set[str]):
    directory = workdir(tmp_path)
    config = yaml.safe_load((directory / "config" / "test.yaml").read_text())
    config.update(arms=["none", "next"], seeds=[0], probe=probe)
    (directory / "config" / "test.yaml").write_text(yaml.safe_dump(config))
    planned = snakemake(directory, "-n", "--cores", "1").stdout
    outputs = {line.split("results/test/")[1].removesuffix("/probe.parquet") for line in planned.splitlines()
               if line.strip().startswith("output:") and line.strip().endswith("probe.parquet")}  # fmt: skip
    assert outputs == probed


def test_no_command_line_grows_with_the_experiment(tmp_path: Path):
    """The summary's manifest travels in a file: planning config/compare.yaml at 8 rounds (a 285 KB manifest, over
    Linux's 128 KiB limit for one argument) prints no command over 10 KB."""
    directory = workdir(tmp_path)
    result = snakemake(directory, "--configfile", "config/compare.yaml", "--config", "rounds=8", "-n", "-p")
    commands = [line for line in result.stdout.splitlines() if "-m nextrl.cli" in line]
    assert any(" summary " in line for line in commands)
    assert max(len(line) for line in commands) < 10_000


def test_the_summary_reads_a_manifest_the_size_of_a_large_comparison(
    finished_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The summary stage on 480 run records (compare.yaml at 8 rounds: 12 arms × 5 seeds × 8 rounds): the test run's
    12 records, each repeated as 40 seeds. Identical seeds must give the test run's own means."""
    from nextrl.stages import summary

    monkeypatch.chdir(finished_run.parents[1])  # the manifest's paths are relative to the workflow's directory
    manifest = json.loads((finished_run / "summary_manifest.json").read_text())
    manifest["runs"] = [{**run, "seed": seed} for seed in range(40) for run in manifest["runs"]]
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest))
    assert len(manifest["runs"]) == 480 and path.stat().st_size > 128 * 1024
    config = json.loads((finished_run / "summary" / "config.json").read_text())
    summary.run(config, manifest=path, output=tmp_path / "summary")
    table = pd.read_csv(tmp_path / "summary" / "table.csv").set_index("arm")
    original = pd.read_csv(finished_run / "summary" / "table.csv").set_index("arm")
    assert set(table.index) == ARMS
    pd.testing.assert_series_equal(table["test_accuracy_mean"], original["test_accuracy_mean"])
    assert (pd.read_parquet(tmp_path / "summary" / "per_seed.parquet").groupby("arm")["seed"].nunique() == 40).all()


def test_vllm_rollouts_run_the_dag_and_feed_the_importance_correction(tmp_path: Path):
    """`rollout.backend: vllm` through Snakemake on config/test.yaml (plain RL and NExt, two rounds): every RL chunk
    samples from the real engine, selection and the probe score their candidates with it, and the importance metrics
    come from the real sampler (trainer and sampler agree: ratios near 1)."""
    from nextrl.rl.importance import IS_COLUMNS

    directory = workdir(tmp_path)
    shape = {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_heads": 2,
        "num_kv_heads": 1,
    }  # head_dim 32: see vllm_base
    settings = {
        "experiment": "vllm",
        "arms": ["none", "next"],
        "rollout": {"backend": "vllm"},
        "model": {"shape": shape},
    }
    (directory / "vllm.yaml").write_text(yaml.safe_dump(settings))
    snakemake(directory, "--cores", "2", "--configfile", "config/test.yaml", "vllm.yaml")
    results = directory / "results" / "vllm"
    for chunk in ("none/seed0/round0", "none/seed0/round1", "next/seed0/round1"):
        metrics = pd.read_parquet(results / chunk / "rl" / "metrics.parquet")
        assert set(IS_COLUMNS) <= set(metrics.columns) and metrics[list(IS_COLUMNS)].notna().all().all(), chunk
        assert metrics["is_mean_abs_logprob_gap"].max() < 1e-3, chunk
        assert metrics["is_ratio_mean"].between(0.99, 1.01).all(), chunk
    assert (results / "summary" / "table.csv").is_file()
