# Path helpers and input functions; the predict–extend loop lives here (round r consumes round r−1).
import json
import os
import sys

from snakemake.utils import validate

from nextrl.config import check_cross_keys

validate(config, schema="../workflow/schemas/config.schema.yaml", set_default=True)
check_cross_keys(config)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

RESULTS = f"results/{config['experiment']}"
LAST_ROUND = config["rounds"] - 1
JUMP_ARMS = [arm for arm in config["arms"] if arm != "none"]
# Keys that only shape the DAG stay out of the stages' config, so raising them re-runs nothing old.
STAGE_CONFIG = json.dumps({key: value for key, value in config.items() if key not in ("seeds", "arms", "rounds")})
# The interpreter running Snakemake runs the stages too (the project venv, wherever it lives).
NEXTRL = f"{sys.executable} -m nextrl.cli"


wildcard_constraints:
    arm="[a-z_]+",
    seed=r"\d+",
    round=r"\d+",


def round_dir(arm, seed, round_index):
    return f"{RESULTS}/{arm}/seed{seed}/round{round_index}"


def run_dir(w):
    return round_dir(w.arm, w.seed, w.round)


def log_path(stage):
    return f"{RESULTS}/logs/{stage}/{{arm}}_seed{{seed}}_round{{round}}.log"


def benchmark_path(stage):
    return f"{RESULTS}/benchmarks/{stage}/{{arm}}_seed{{seed}}_round{{round}}.tsv"


def data_dir():
    return f"{RESULTS}/data"


def base_dir():
    return f"{RESULTS}/base"


def summary_dir():
    return f"{RESULTS}/summary"


def start_input(w):
    """Round r's start model: the base model, or (jump arms) round r−1's selected, merged candidate."""
    r = int(w.round)
    if w.arm == "none" or r == 0:
        return base_dir()
    return f"{round_dir(w.arm, w.seed, r - 1)}/jump/selected"


def start_model(w):
    start = start_input(w)
    return start if start == base_dir() else f"{start}/model"


def resume_input(w):
    """Plain RL resumes the previous round's full training state, so chunked RL equals one continuous run."""
    r = int(w.round)
    return [f"{round_dir(w.arm, w.seed, r - 1)}/rl"] if w.arm == "none" and r > 0 else []


def resume_state(w):
    inputs = resume_input(w)
    return f"{inputs[0]}/state" if inputs else ""


def summary_inputs(_):
    inputs = [f"{RESULTS}/base_eval/test.parquet"]
    for arm in config["arms"]:
        for seed in config["seeds"]:
            inputs += [f"{round_dir(arm, seed, r)}/rl" for r in range(config["rounds"])]
            inputs.append(f"{round_dir(arm, seed, LAST_ROUND)}/test.parquet")
            if arm in JUMP_ARMS:
                inputs += [f"{round_dir(arm, seed, r)}/jump/selected" for r in range(LAST_ROUND)]
    return inputs


def experiment_dir(_):
    """results/<experiment> (the MLflow store lives there); a function, so the rules hold no hard-coded prefix."""
    return RESULTS
