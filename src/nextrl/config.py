"""The experiment configuration: JSON-Schema validation (with defaults) and the cross-key rules a schema cannot say.

The schema ships inside the package (``nextrl/config.schema.yaml``) and documents every key, so an installed nextrl
validates a config anywhere. The workflow validates its config with it before building the DAG (rules/common.smk);
:func:`load_config` does the same for standalone use and the CLI.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from nextrl.experiment import arm_config, arm_method, jump_arms, plain_arms

SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")


class ConfigError(ValueError):
    """A bad configuration value; the message names the key."""


def _with_defaults(validator_class: type[jsonschema.protocols.Validator]) -> type[jsonschema.protocols.Validator]:
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator: Any, properties: Mapping[str, Any], instance: Any, schema: Any) -> Any:
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema:
                    instance.setdefault(name, copy.deepcopy(subschema["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def validate_config(config: dict[str, Any], schema_path: Path = SCHEMA_PATH) -> dict[str, Any]:
    """Fill defaults and check ``config`` against the schema and the cross-key rules; returns it."""
    schema = yaml.safe_load(schema_path.read_text())
    _check_schema(config, schema)
    check_cross_keys(config)
    for name in config["variants"]:
        _check_variant(config, name, schema)
    _check_training_modes(config)
    _check_gpu_requests(config)
    return config


def _check_gpu_requests(config: Mapping[str, Any]) -> None:
    """A job that computes on CUDA asks for the GPU it uses (``resources.<kind>.gpu``), so the scheduler — SLURM, or
    Snakemake's ``--resources gpu=N`` with nextrl.jobs.device_lease on a workstation — gives it one of its own."""
    resources = config["resources"]
    if config["runtime"]["device"] == "cuda":
        for kind in ("train", "evaluate"):
            if resources[kind]["gpu"] == 0:
                raise ConfigError(
                    f"config key resources.{kind}.gpu: 0, but runtime.device is cuda; ask for the GPU the job uses"
                )
    for arm in config["arms"]:
        method = arm_method(config, arm)
        if config["extrapolators"].get(method, {}).get("device") != "cuda":
            continue
        if resources["fit"]["gpu"] == 0:
            raise ConfigError(
                f"config key resources.fit.gpu: 0, but extrapolators.{method}.device is cuda; ask for the GPU"
            )
        if config["heldout"] != "off" and resources["weights"]["gpu"] == 0:  # the heldout job fits every method
            raise ConfigError(
                f"config key resources.weights.gpu: 0, but extrapolators.{method}.device is cuda and the held-out "
                f"check (heldout: {config['heldout']}) fits it in a weights job; ask for the GPU or set heldout: off"
            )


def _check_training_modes(config: Mapping[str, Any]) -> None:
    """Full-parameter RL (``rl.mode: full``), in the arms that run it, has no KL penalty (the KL reference of the LoRA
    path is the model with its adapter disabled; full mode keeps no second model) and samples with HF generate."""
    for arm in config["arms"]:
        rl = arm_config(config, arm)["rl"]
        key = f"variants.{arm}.rl.mode" if arm in config["variants"] else "rl.mode"
        if rl["mode"] == "full" and rl["kl_coef"] > 0:
            raise ConfigError(f"config key {key}: full-parameter RL has no KL reference model; set rl.kl_coef to 0")
        # Whether vLLM is installed is the job's question, not the plan's (a login node plans for GPU nodes): a stage
        # that builds an engine stops with an error naming rollout.backend (nextrl.rollouts.vllm_engine.vllm_api).
        if rl["mode"] == "full" and config["rollout"]["backend"] == "vllm":
            raise ConfigError(
                f"config key {key}: full-parameter RL needs rollout.backend hf (vLLM serves LoRA adapters)"
            )


def _check_schema(config: dict[str, Any], schema: Mapping[str, Any], prefix: str = "") -> None:
    validator = _with_defaults(jsonschema.Draft202012Validator)(schema)
    errors = sorted(validator.iter_errors(config), key=lambda error: list(error.absolute_path))
    if errors:
        error = errors[0]
        key = prefix + ".".join(str(part) for part in error.absolute_path) or "<top level>"
        raise ConfigError(f"config key {key}: {error.message}")


def _check_variant(config: Mapping[str, Any], name: str, schema: Mapping[str, Any]) -> None:
    variant = config["variants"][name]
    known = ["none", *sorted(schema["properties"]["extrapolators"]["properties"])]
    if name in known:
        raise ConfigError(f"config key variants.{name}: {name!r} is already a method's name; pick another")
    if variant["of"] not in known:
        raise ConfigError(f"config key variants.{name}.of: unknown method {variant['of']!r}; known: {known}")
    allowed = "rl" if variant["of"] == "none" else "jump"
    extra = sorted(set(variant) - {"of", allowed})
    if extra:
        raise ConfigError(
            f"config key variants.{name}.{extra[0]}: a variant of {variant['of']!r} may override `{allowed}` only"
            + (" (jump arms share round 0 with `none`)" if extra[0] == "rl" else "")
        )
    unknown = sorted(set(variant.get(allowed, {})) - set(schema["properties"][allowed]["properties"]))
    if unknown:
        raise ConfigError(f"config key variants.{name}.{allowed}.{unknown[0]}: not a key of `{allowed}`")
    resolved = arm_config(config, name)
    _check_schema(resolved[allowed], schema["properties"][allowed], prefix=f"variants.{name}.{allowed}.")
    check_cross_keys(resolved)


def extrapolator_names(schema_path: Path = SCHEMA_PATH) -> list[str]:
    """The extrapolators the schema has an options block for (each is a key of nextrl.extrapolators.REGISTRY)."""
    schema = yaml.safe_load(schema_path.read_text())
    return sorted(schema["properties"]["extrapolators"]["properties"])


def check_cross_keys(config: Mapping[str, Any]) -> None:
    """Rules that involve several keys or outside knowledge (the schema checks each key alone)."""
    known = ["none", *extrapolator_names()]
    for arm in config["arms"]:
        if arm not in known and arm not in config["variants"]:
            raise ConfigError(
                f"config key arms: unknown arm {arm!r}; known: methods {known} and variants {list(config['variants'])}"
            )
    if "import" in config:
        _check_import(config)
    elif "none" not in config["arms"] and jump_arms(config):
        raise ConfigError("config key arms: jump arms need `none` (it runs their shared round 0 and is the baseline)")
    rl = config["rl"]
    if rl["chunk_steps"] % rl["snapshot_every"]:
        raise ConfigError(
            f"config key rl.snapshot_every: {rl['snapshot_every']} does not divide rl.chunk_steps {rl['chunk_steps']}"
        )
    if rl["lr_schedule"] == "cosine" and "lr_decay_steps" not in rl:
        raise ConfigError("config key rl.lr_decay_steps: required when rl.lr_schedule is 'cosine'")
    horizon = config["jump"]["horizon"]
    if horizon % rl["snapshot_every"]:
        raise ConfigError(
            f"config key jump.horizon: {horizon} is not a multiple of rl.snapshot_every {rl['snapshot_every']}"
        )
    # The held-out check fits on the round up to T − H and needs a target pair there: snapshots s and s + H ≤ T − H.
    short = rl["chunk_steps"] < 2 * horizon + rl["snapshot_every"]
    if short and config["heldout"] != "off" and "import" not in config and jump_arms(config):
        raise ConfigError(
            f"config key heldout: {config['heldout']!r} needs rl.chunk_steps ≥ 2 × jump.horizon + rl.snapshot_every "
            f"({2 * horizon + rl['snapshot_every']}), not {rl['chunk_steps']}: shorten the horizon or set heldout off"
        )
    model = config["model"]
    if model["source"] == "local":
        if not model.get("path"):
            raise ConfigError("config key model.path: required when model.source is 'local'")
        path = Path(model["path"])
        if not (path / "config.json").is_file():
            raise ConfigError(
                f"config key model.path: {path} does not exist or is not a model directory (no config.json)"
            )
    elif model["source"] == "gguf":
        if bool(model.get("path")) == bool(model.get("package")):
            raise ConfigError(
                "config key model.path / model.package: source gguf takes one of them (a .gguf file, or an installed "
                "package that ships one)"
            )
        if model.get("path") and not Path(model["path"]).is_file():
            raise ConfigError(f"config key model.path: {model['path']} does not exist or is not a file")
    elif model["source"] == "tiny":
        for key in ("shape", "warm_start"):
            if key not in model:
                raise ConfigError(f"config key model.{key}: required when model.source is 'tiny'")
    if config["task"]["chat"] and model["source"] in ("tiny", "shipped"):
        raise ConfigError(
            f"config key task.chat: the {model['source']} model has a character tokenizer without a chat template; "
            "a chat task needs a chat model (model.source gguf or local)"
        )
    _check_task(config["task"])


def _check_import(config: Mapping[str, Any]) -> None:
    """An imported run is round 0 of every arm: jump arms only, one seed, one round, and files that exist."""
    imported = config["import"]
    for key in ("run_dir", "base_model"):
        if not Path(imported[key]).is_dir():
            raise ConfigError(f"config key import.{key}: {imported[key]} is not a directory")
    if "accuracy" in imported and not Path(imported["accuracy"]).is_file():
        raise ConfigError(f"config key import.accuracy: {imported['accuracy']} is not a file")
    if plain_arms(config):
        raise ConfigError(
            f"config key arms: an imported run has no RL job, so plain-RL arms {plain_arms(config)} cannot run; "
            "list jump arms only"
        )
    if len(config["seeds"]) != 1 or config["rounds"] != 1:
        raise ConfigError(
            "config key seeds / rounds: an imported run is one seed and one round (seeds: [0], rounds: 1)"
        )


def _check_task(task: Mapping[str, Any]) -> None:
    from nextrl.tasks import TaskError, check_split_seeds, check_task_params

    needed = ("dataset", "sizes", "split_seeds") if task["source"] == "reasoning_gym" else ("path", "fractions")
    for key in needed:
        if key not in task:
            raise ConfigError(f"config key task.{key}: required when task.source is {task['source']!r}")
    if task["source"] == "reasoning_gym":
        try:
            check_task_params(task["dataset"], task.get("params", {}))
            check_split_seeds(task["split_seeds"], task["sizes"])
        except TaskError as error:
            raise ConfigError(f"config key {error}") from None
    else:
        if task["answer_extraction"] != "completion":
            raise ConfigError(
                "config key task.answer_extraction: applies to reasoning_gym tasks; a local_file task is scored by "
                "math-verify, which parses the whole completion"
            )
        if not Path(task["path"]).is_file():
            raise ConfigError(f"config key task.path: task file {task['path']} does not exist")
        if sum(task["fractions"].values()) >= 1:
            raise ConfigError(f"config key task.fractions: {dict(task['fractions'])} leave no train split (sum ≥ 1)")


def load_config(path: Path) -> dict[str, Any]:
    """Read a YAML config file and validate it."""
    return validate_config(yaml.safe_load(Path(path).read_text()))
