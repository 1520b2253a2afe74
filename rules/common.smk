# The results layout and the predict–extend loop (round r consumes round r−1): the one owner of every path.
import json
import os
import sys
from pathlib import Path

import nextrl  # noqa: F401  (sets the offline / no-telemetry environment for every job)
from nextrl.config import arm_config, arm_method, jump_arms, plain_arms, training_mode, validate_config
from nextrl.jobs.device_lease import check_machine_has
from nextrl.jobs.tracking import log_queued

# The schema (workflow/schemas/config.schema.yaml, defaults filled in) and the cross-key rules, with errors that
# name the key as `config key a.b.c: …` — the same check the CLI runs on a standalone config.
validate_config(config)

RESULTS = f"results/{config['experiment']}"
ROUND = f"{RESULTS}/{{arm}}/seed{{seed}}/round{{round}}"
LAST_ROUND = config["rounds"] - 1
JUMP_ARMS = jump_arms(config)
PLAIN_ARMS = plain_arms(config)
# Keys that only shape the DAG or the jobs' resources stay out of the stages' config, so changing them re-runs nothing
# old; an arm's stages get its variant's settings in place (nextrl.config.arm_config), so a variant never touches
# another arm's jobs.
DAG_KEYS = ("seeds", "arms", "rounds", "variants", "heldout", "resources")


def stage_config(arm):
    return json.dumps({key: value for key, value in arm_config(config, arm).items() if key not in DAG_KEYS})


STAGE_CONFIGS = {arm: stage_config(arm) for arm in config["arms"]}
SHARED_CONFIG = stage_config("none")


def config_of(w):
    """The stages' config as JSON: the arm's own (variant overrides applied), or the shared one for jobs of no arm."""
    return STAGE_CONFIGS.get(getattr(w, "arm", None), SHARED_CONFIG)


def jumps(arm):
    return arm in JUMP_ARMS


def full_mode(arm):
    """Whether the arm trains every weight (rl.mode full) instead of a LoRA adapter."""
    return training_mode(config, arm) == "full"


def carries(arm):
    return arm_config(config, arm)["jump"]["continuation"] == "carry"


def experiment_dir(_):
    """results/<experiment> (the MLflow store lives there); a function, as the linter asks of path prefixes."""
    return RESULTS


# What every stage call shares; the interpreter running Snakemake runs the stages too (the project venv). --gpus: the
# job's GPU resource (0 for local rules, which ask for nothing), which the stage leases itself (nextrl.jobs.device_lease).
STAGE = {
    "config": config_of,
    "experiment_dir": experiment_dir,
    "nextrl": f"{sys.executable} -m nextrl.cli",
    "gpus": lambda w, resources: getattr(resources, "gpu", 0),
}
SHARED_OPTIONS = "--config-json {params.config:q} --experiment-dir {params.experiment_dir} --gpus {params.gpus} --threads {threads}"
RUN_OPTIONS = "--arm {wildcards.arm} --seed {wildcards.seed} --round {wildcards.round}"


def cpus(kind):
    """A rule's threads: config `resources.<kind>.cpus` (SLURM --cpus-per-task; torch's intra-op threads)."""
    return config["resources"][kind]["cpus"]


def job_resources(kind):
    """A rule's resources: config `resources.<kind>` — gpu, mem_mb and runtime (minutes) — the same for every rule of
    the kind (the schema's defaults fit the tiny model)."""
    return {name: value for name, value in config["resources"][kind].items() if name != "cpus"}


# Stage jobs queue their MLflow records (nextrl.jobs.tracking); this process logs them once, however the run ends.
onsuccess:
    log_queued(Path(RESULTS))


onerror:
    log_queued(Path(RESULTS))


onstart:
    # A local run (not SLURM, not a dry run) stops before any job if a job asks for more GPUs than this machine has.
    if workflow.local_exec:
        check_machine_has({f"resources.{kind}.gpu": asked["gpu"] for kind, asked in config["resources"].items()}, os.environ)


def call(stage, *options, per_run=True):
    """The shell command of a stage: `nextrl <stage>`, the shared options, ``options``, the run's wildcards
    (``per_run``: one arm, seed and round) and its log."""
    words = ["{params.nextrl}", stage, SHARED_OPTIONS, *options, RUN_OPTIONS if per_run else "", "> {log} 2>&1"]
    return " ".join(word for word in words if word)


wildcard_constraints:
    arm="[a-z][a-z0-9_]*",
    seed=r"\d+",
    round=r"\d+",


def round_dir(arm, seed, round_index):
    return f"{RESULTS}/{arm}/seed{seed}/round{round_index}"


def log_path(stage):
    return f"{RESULTS}/logs/{stage}/{{arm}}_seed{{seed}}_round{{round}}.log"


def benchmark_path(stage, arm="{arm}", seed="{seed}", round_index="{round}"):
    return f"{RESULTS}/benchmarks/{stage}/{arm}_seed{seed}_round{round_index}.tsv"


# An imported run (config `import`, rules/import.smk) replaces round 0's RL chunk and brings its own base model.
IMPORTING = "import" in config
DATA = f"{RESULTS}/data"
BASE = os.path.abspath(config["import"]["base_model"]) if IMPORTING else f"{RESULTS}/base"
BASE_TEST = f"{RESULTS}/base_eval/test.parquet"
SUMMARY = f"{RESULTS}/summary"
FIGURES_DIR = f"{RESULTS}/figures"


def previous_round(w):
    return round_dir(w.arm, w.seed, int(w.round) - 1)


def jumped_into(w):
    """Whether round r starts from a jump (a jump arm after round 0)."""
    return jumps(w.arm) and int(w.round) > 0


def start_dir(w):
    """The output holding round r's start model: the base model, or (jump arms) round r−1's selected jump."""
    return f"{previous_round(w)}/jump/selected" if jumped_into(w) else BASE


def start_model(w):
    return f"{start_dir(w)}/model" if jumped_into(w) else BASE


def start_offset(w):
    """The start model's low-rank offset from the base model ("" = none: the base model itself, or full mode, whose
    start model differs from the base by dense deltas)."""
    return f"{previous_round(w)}/jump/selected/offset.safetensors" if jumped_into(w) and not full_mode(w.arm) else ""


def resume_state(w):
    """Every round after the first resumes the previous round's training state (cursor, RNG; and LoRA + AdamW
    unless jump.continuation is fresh)."""
    return f"{previous_round(w)}/rl/state" if int(w.round) > 0 else ""


def final_model(w):
    """The model directory a round ends on: its start model under the LoRA adapter, or (full mode) its own."""
    return f"{round_dir(w.arm, w.seed, w.round)}/rl/state/model" if full_mode(w.arm) else start_model(w)


def final_adapter(w):
    """The adapter over final_model ("" in full mode: the weights hold everything)."""
    return "" if full_mode(w.arm) else f"{round_dir(w.arm, w.seed, w.round)}/rl/state/adapter"


def dense_trajectory_options(w):
    """What the trajectory of a full-parameter round needs: the base model and the round's start weights (the
    jumped model, the previous round's own, or the base)."""
    if not full_mode(w.arm):
        return ""
    if jumped_into(w):
        start = start_model(w)
    else:
        start = f"{previous_round(w)}/rl/state/model" if int(w.round) > 0 else BASE
    return f"--base-model {BASE} --start-weights {start}"


def jump_selection(w):
    return f"{previous_round(w)}/jump/selected/selection.parquet" if jumped_into(w) else ""


def start_adapter(w):
    """The adapter a round's LoRA continues from ("" = a fresh LoRA)."""
    continues = int(w.round) > 0 and (not jumps(w.arm) or carries(w.arm))
    return f"{previous_round(w)}/rl/state/adapter" if continues else ""


def previous_rl(w):
    """The previous round's RL chunk (its state and adapter), after round 0."""
    return [f"{previous_round(w)}/rl"] if int(w.round) > 0 else []


def heldout_checked(arm, round_index):
    """Whether (arm, round) gets the held-out check (config `heldout`); round 0 is `none`'s chunk in every jump arm,
    so it is checked once, in the first jump arm."""
    if not jumps(arm) or round_index == LAST_ROUND or config["heldout"] == "off":
        return False
    if round_index == 0:
        return arm == JUMP_ARMS[0]
    return config["heldout"] == "every_round"


def imported_manifest():
    """What the summary reads of an imported run: round 0 of every arm (no test, no benchmarks); the trajectory and
    the probe once, from the first arm."""
    evaluating = config["import"]["evaluate"]
    runs = []
    for arm in config["arms"]:
        for seed in config["seeds"]:
            here = round_dir(arm, seed, 0)
            runs.append({
                "arm": arm, "seed": seed, "round": 0, "training": "lora", "rl": f"{here}/rl",
                "selection": f"{here}/jump/selected/selection.parquet" if evaluating else None,
                "fit": f"{here}/predictor/fit.json",
                "heldout": f"{here}/heldout.parquet" if heldout_checked(arm, 0) else None,
                "probe": f"{here}/probe.parquet" if evaluating and arm == JUMP_ARMS[0] else None,
                "trajectory": f"{here}/trajectory.parquet" if arm == JUMP_ARMS[0] else None,
                "test": None, "rl_benchmark": None, "overhead_benchmarks": [],
            })  # fmt: skip
    return {"imported": True, "runs": runs}


def summary_manifest():
    """Every artifact the summary reads, per (arm, seed, round), with the paths this file owns."""
    if IMPORTING:
        return imported_manifest()
    runs = []
    for arm in config["arms"]:
        for seed in config["seeds"]:
            for r in range(config["rounds"]):
                here = round_dir(arm, seed, r)
                jumping = jumps(arm) and r < LAST_ROUND
                # round 0 of a jump arm is `none`'s chunk: its probe runs only in `none`; it rays LoRA factors
                probes = (r > 0 or not jumps(arm)) and not full_mode(arm)
                # E1 and R² (summary findings) on round 0's trajectory, once per distinct run: `none`'s (fitted by
                # every jump arm; read from the first) and each other plain full-parameter arm's
                shared_with_jumps = arm == "none" and bool(JUMP_ARMS)
                tracked = r == 0 and (arm in JUMP_ARMS[:1] or (full_mode(arm) and not jumps(arm) and not shared_with_jumps))
                rl_arm = "none" if jumps(arm) and r == 0 else arm  # round 0 is shared (share_first_round)
                overhead = ["trajectory", "fit", "extrapolate", "select"]
                runs.append({
                    "arm": arm, "seed": seed, "round": r, "training": training_mode(config, arm), "rl": f"{here}/rl",
                    "selection": f"{here}/jump/selected/selection.parquet" if jumping else None,
                    "fit": f"{here}/predictor/fit.json" if jumping else None,
                    "heldout": f"{here}/heldout.parquet" if heldout_checked(arm, r) else None,
                    "probe": f"{here}/probe.parquet" if probes else None,
                    "trajectory": f"{here}/trajectory.parquet" if tracked else None,
                    "test": f"{here}/test.parquet" if r == LAST_ROUND else None,
                    "rl_benchmark": benchmark_path("rl_chunk", rl_arm, seed, r),
                    "overhead_benchmarks": [benchmark_path(stage, arm, seed, r) for stage in overhead] if jumping else [],
                })  # fmt: skip
    methods = {arm: arm_method(config, arm) for arm in config["arms"]}
    training = {arm: training_mode(config, arm) for arm in config["arms"]}
    return {"base_test": BASE_TEST, "plain_arms": PLAIN_ARMS, "methods": methods, "training": training, "runs": runs}


def summary_inputs(_):
    """The outputs (files or directories) that hold the manifest's files."""
    manifest = summary_manifest()
    paths = [] if IMPORTING else [manifest["base_test"]]
    for run in manifest["runs"]:
        paths.append(run["rl"])
        paths.extend(run[key] for key in ("heldout", "probe", "trajectory", "test") if run[key])
        if run["selection"]:
            paths += [os.path.dirname(run["selection"]), os.path.dirname(run["fit"])]
    return paths


# The figures an experiment draws (rules/figures.smk): an imported run has no learning curves or step counts, and
# its α sweep and probe only when it is evaluated.
if not IMPORTING:
    FIGURE_NAMES = ["curves", "steps", "energy", "linearity", "alpha", "probe"]
elif config["import"]["evaluate"]:
    FIGURE_NAMES = ["energy", "linearity", "alpha", "probe"]
else:
    FIGURE_NAMES = ["energy", "linearity"]


def imported_targets():
    """What an imported run yields beyond the summary and figures: every arm's candidates (and merged models)."""
    if not IMPORTING:
        return []
    outputs = ["jump/candidates", *(["jump/merged"] if config["import"]["merge"] else [])]
    return [f"{round_dir(arm, seed, 0)}/{output}" for arm in config["arms"] for seed in config["seeds"] for output in outputs]


def figure_outputs(name, category):
    """A figure rule's PNG (a report item with its caption, workflow/report/<name>.rst) and PDF."""
    return {
        "png": report(f"{FIGURES_DIR}/{name}.png", caption=f"../workflow/report/{name}.rst", category=category),
        "pdf": f"{FIGURES_DIR}/{name}.pdf",
    }


def draw(name):
    """The shell command of a figure rule: `nextrl figure` on the summary directory."""
    return call("figure", f"--name {name} --summary {{input}} --output {FIGURES_DIR}/{name}", per_run=False)
