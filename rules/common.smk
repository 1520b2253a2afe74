# What every rules file needs. The validated config, the results layout (the loop's round r consumes round r−1), the
# stage call and the jobs' resources. Which jobs of a rule exist is decided in the rule's own file.
import json
import os
import sys
from pathlib import Path

import nextrl  # noqa: F401  (sets the offline / no-telemetry environment for every job)
from nextrl.config import validate_config
from nextrl.experiment import arm_config, arm_method, jump_arms, plain_arms, training_mode
from nextrl.jobs.artifacts import write_json
from nextrl.rl.chunk_layout import ChunkLayout

# The schema (nextrl/config.schema.yaml, defaults filled in) and the cross-key rules, with errors that name the key as
# `config key a.b.c: …` — the same check the CLI runs on a standalone config.
validate_config(config)

RESULTS = f"results/{config['experiment']}"
ROUND = f"{RESULTS}/{{arm}}/seed{{seed}}/round{{round}}"
LAST_ROUND = config["rounds"] - 1
JUMP_ARMS = jump_arms(config)
PLAIN_ARMS = plain_arms(config)
# An imported run (config `import`, rules/import.smk) replaces round 0's RL chunk and brings its own base model.
IMPORTING = "import" in config
DATA = f"{RESULTS}/data"
BASE = os.path.abspath(config["import"]["base_model"]) if IMPORTING else f"{RESULTS}/base"
BASE_TEST = f"{RESULTS}/base_eval/test.parquet"
SUMMARY = f"{RESULTS}/summary"
FIGURES_DIR = f"{RESULTS}/figures"
# Keys that only shape the DAG or the jobs' resources stay out of the stages' config, so changing them re-runs nothing
# old; an arm's stages get its variant's settings in place (nextrl.experiment.arm_config), so a variant never touches
# another arm's jobs.
DAG_KEYS = ("seeds", "arms", "rounds", "variants", "heldout", "probe", "resources")


def stage_config(arm):
    return json.dumps({key: value for key, value in arm_config(config, arm).items() if key not in DAG_KEYS})


STAGE_CONFIGS = {arm: stage_config(arm) for arm in config["arms"]}
SHARED_CONFIG = stage_config("none")


def get_stage_config(w):
    """The stages' config as JSON: the arm's own (variant overrides applied), or the shared one for jobs of no arm."""
    return STAGE_CONFIGS.get(getattr(w, "arm", None), SHARED_CONFIG)


def get_experiment_dir(_):
    """results/<experiment> (the MLflow store lives there); a function, as the linter asks of path prefixes."""
    return RESULTS


# What every stage call shares; the interpreter running Snakemake runs the stages too (the project venv). --gpus: the
# job's GPU resource (0 for local rules, which ask for nothing), which the stage leases itself (nextrl.jobs.device_lease).
STAGE = {
    "config": get_stage_config,
    "experiment_dir": get_experiment_dir,
    "nextrl": f"{sys.executable} -m nextrl.cli",
    "gpus": lambda w, resources: getattr(resources, "gpu", 0),
}
SHARED_OPTIONS = "--config-json {params.config:q} --experiment-dir {params.experiment_dir} --gpus {params.gpus} --threads {threads}"
RUN_OPTIONS = "--arm {wildcards.arm} --seed {wildcards.seed} --round {wildcards.round}"


def call(stage, *options, per_run=True):
    """The shell command of a stage: `nextrl <stage>`, the shared options, ``options``, the run's wildcards
    (``per_run``: one arm, seed and round) and its log."""
    words = ["{params.nextrl}", stage, SHARED_OPTIONS, *options, RUN_OPTIONS if per_run else "", "> {log} 2>&1"]
    return " ".join(word for word in words if word)


def cpus(kind):
    """A rule's threads: config `resources.<kind>.cpus` (SLURM --cpus-per-task; torch's intra-op threads)."""
    return config["resources"][kind]["cpus"]


def job_resources(kind):
    """A rule's resources: config `resources.<kind>` — gpu, mem_mb and runtime (minutes) — the same for every rule of
    the kind (the schema's defaults fit the tiny model)."""
    return {name: value for name, value in config["resources"][kind].items() if name != "cpus"}


def round_dir(arm, seed, round_index):
    return f"{RESULTS}/{arm}/seed{seed}/round{round_index}"


def log_path(stage):
    return f"{RESULTS}/logs/{stage}/{{arm}}_seed{{seed}}_round{{round}}.log"


def benchmark_path(stage, arm="{arm}", seed="{seed}", round_index="{round}"):
    return f"{RESULTS}/benchmarks/{stage}/{arm}_seed{seed}_round{round_index}.tsv"


def jumps(arm):
    return arm in JUMP_ARMS


def full_mode(arm):
    """Whether the arm trains every weight (rl.mode full) instead of a LoRA adapter."""
    return training_mode(config, arm) == "full"


def carries(arm):
    return arm_config(config, arm)["jump"]["continuation"] == "carry"


def previous_round(w):
    return round_dir(w.arm, w.seed, int(w.round) - 1)


def jumped_into(w):
    """Whether round r starts from a jump (a jump arm after round 0)."""
    return jumps(w.arm) and int(w.round) > 0


# A round's RL chunk, relative to the round's directory (nextrl.rl.chunk_layout owns its layout).
CHUNK = ChunkLayout(Path("rl"))
# The same for a rule's `rl` input, in its shell command.
RL_INPUT = ChunkLayout(Path("{input.rl}"))


def get_start_dir(w):
    """The output holding round r's start model: the base model, or (jump arms) round r−1's selected jump."""
    return f"{previous_round(w)}/jump/selected" if jumped_into(w) else BASE


def get_start_model(w):
    return f"{get_start_dir(w)}/model" if jumped_into(w) else BASE


def get_start_offset(w):
    """The start model's low-rank offset from the base model ("" = none: the base model itself, or full mode, whose
    start model differs from the base by dense deltas)."""
    return f"{previous_round(w)}/jump/selected/offset.safetensors" if jumped_into(w) and not full_mode(w.arm) else ""


def get_jump_selection(w):
    return f"{previous_round(w)}/jump/selected/selection.parquet" if jumped_into(w) else ""


def get_previous_rl(w):
    """The previous round's RL chunk, after round 0: every later round resumes its training state (cursor, RNG; and
    LoRA + AdamW unless jump.continuation is fresh)."""
    return [f"{previous_round(w)}/rl"] if int(w.round) > 0 else []


def get_resume(w):
    """--resume: the previous round's RL chunk, or "" in round 0."""
    return "".join(get_previous_rl(w))


def get_final_model(w):
    """The model directory a round ends on: its start model under the LoRA adapter, or (full mode) its own."""
    return f"{round_dir(w.arm, w.seed, w.round)}/{CHUNK.model}" if full_mode(w.arm) else get_start_model(w)


def get_final_adapter(w):
    """The adapter over the final model ("" in full mode: the weights hold everything)."""
    return "" if full_mode(w.arm) else f"{round_dir(w.arm, w.seed, w.round)}/{CHUNK.adapter}"


def get_start_adapter(w):
    """The adapter a round's LoRA continues from ("" = a fresh LoRA)."""
    continues = int(w.round) > 0 and (not jumps(w.arm) or carries(w.arm))
    return f"{previous_round(w)}/{CHUNK.adapter}" if continues else ""


def get_dense_options(w):
    """What the trajectory of a full-parameter round needs: the base model and the round's start weights (the
    jumped model, the previous round's own, or the base)."""
    if not full_mode(w.arm):
        return ""
    if jumped_into(w):
        start = get_start_model(w)
    else:
        start = f"{previous_round(w)}/{CHUNK.model}" if int(w.round) > 0 else BASE
    return f"--base-model {BASE} --start-weights {start}"


# The artifacts of a round, as the summary reads them (rules/summary.smk); which jobs exist is decided in their rule
# files (PROBED in probe.smk, HELDOUT_CHECKED in jump.smk).
def round_artifacts(arm, seed, r):
    """The paths of one (arm, seed, round)'s artifacts, None where the round has none (the summary's manifest)."""
    here = round_dir(arm, seed, r)
    jumping = jumps(arm) and r < LAST_ROUND
    # E1 and R² (summary findings) on round 0's trajectory, once per distinct run: `none`'s (fitted by every jump arm;
    # read from the first) and each other plain full-parameter arm's
    shared_with_jumps = arm == "none" and bool(JUMP_ARMS)
    tracked = r == 0 and (arm in JUMP_ARMS[:1] or (full_mode(arm) and not jumps(arm) and not shared_with_jumps))
    rl_arm = "none" if jumps(arm) and r == 0 else arm  # round 0 is shared (share_first_round)
    overhead = ["trajectory", "fit", "extrapolate", "select"]
    return {
        "arm": arm, "seed": seed, "round": r, "training": training_mode(config, arm), "rl": f"{here}/rl",
        "selection": f"{here}/jump/selected/selection.parquet" if jumping else None,
        "fit": f"{here}/predictor/fit.json" if jumping else None,
        "heldout": f"{here}/heldout.parquet" if (arm, r) in HELDOUT_CHECKED else None,
        "probe": f"{here}/probe.parquet" if (arm, r) in PROBED else None,
        "trajectory": f"{here}/trajectory.parquet" if tracked else None,
        "test": f"{here}/test.parquet" if r == LAST_ROUND else None,
        "rl_benchmark": benchmark_path("rl_chunk", rl_arm, seed, r),
        "overhead_benchmarks": [benchmark_path(stage, arm, seed, r) for stage in overhead] if jumping else [],
    }  # fmt: skip


def imported_round_artifacts(arm, seed):
    """What the summary reads of an imported run's arm: round 0 (no test, no benchmarks); the trajectory once, from
    the first arm."""
    here = round_dir(arm, seed, 0)
    evaluating = config["import"]["evaluate"]
    return {
        "arm": arm, "seed": seed, "round": 0, "training": "lora", "rl": f"{here}/rl",
        "selection": f"{here}/jump/selected/selection.parquet" if evaluating else None,
        "fit": f"{here}/predictor/fit.json",
        "heldout": f"{here}/heldout.parquet" if (arm, 0) in HELDOUT_CHECKED else None,
        "probe": f"{here}/probe.parquet" if (arm, 0) in PROBED else None,
        "trajectory": f"{here}/trajectory.parquet" if arm == JUMP_ARMS[0] else None,
        "test": None, "rl_benchmark": None, "overhead_benchmarks": [],
    }  # fmt: skip


def run_outputs(run):
    """The outputs (files or directories) that hold one round's artifacts (round_artifacts)."""
    paths = [run["rl"], *(run[key] for key in ("heldout", "probe", "trajectory", "test") if run[key])]
    return paths + ([os.path.dirname(run["selection"]), os.path.dirname(run["fit"])] if run["selection"] else [])
