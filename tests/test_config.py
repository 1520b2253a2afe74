import pytest

from nextrl.config import ConfigError, validate_config
from nextrl.experiment import arm_config, arm_method, plain_arms


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: c["rl"].update(chunk_steps=0), r"rl.chunk_steps: 0 is less than the minimum of 1"),
        (lambda c: c["rl"].update(chunk_steps=-3), r"rl.chunk_steps"),
        (lambda c: c["rl"].update(snapshot_every=3), r"rl.snapshot_every: 3 does not divide rl.chunk_steps 4"),
        (lambda c: c["jump"].update(alphas=[]), r"jump.alphas"),
        (lambda c: c["jump"].update(horizon=3, triplets=1) or c["rl"].update(snapshot_every=2), r"jump.horizon: 3"),
        (lambda c: c["jump"].update(continuation="merge"), r"jump.continuation: 'merge' is not one of"),
        (
            lambda c: c.update(heldout="first_round") or c["jump"].update(horizon=2),
            r"heldout: 'first_round' needs rl.chunk_steps ≥ 2 × jump.horizon \+ rl.snapshot_every \(5\), not 4",
        ),
        (lambda c: c.update(arms=["none", "nexxt"]), r"arms: unknown arm 'nexxt'; known: methods \['none', 'alpharl'"),
        (
            lambda c: c["extrapolators"].update(next={"hidden": "big"}),
            r"extrapolators.next.hidden: 'big' is not of type 'integer'",
        ),
        (
            lambda c: c["extrapolators"].update(relex={"rank": 1.5}),
            r"extrapolators.relex.rank: 1.5 is not of type 'integer'",
        ),
        (lambda c: c["extrapolators"].update(linear={"scale": 2}), r"extrapolators.linear: Additional properties"),
        (
            lambda c: c["extrapolators"].update(alpharl={"target_gain": "0.1"}),
            r"extrapolators.alpharl.target_gain: '0.1'",
        ),
        (
            lambda c: c["task"]["params"].update(min_terms="2"),
            r"task.params.min_terms: '2' is not of type <class 'int'>",
        ),
        (lambda c: c["task"]["params"].update(max_terms="two"), r"task.params.max_terms: 'two'"),
        (lambda c: c["task"]["params"].update(min_digits=True), r"task.params.min_digits: True"),
        (lambda c: c["task"]["params"].update(max_digits=None), r"task.params.max_digits: None"),
        (lambda c: c["task"]["params"].update(operators=[1]), r"task.params.operators: \[1\]"),
        (lambda c: c["task"]["params"].update(size=10), r"task.params.size: not a parameter"),
        (lambda c: c["task"]["params"].update(digits=2), r"task.params.digits: not a parameter"),
        (
            lambda c: c["task"]["split_seeds"].update(selection=1000005),
            r"task.split_seeds.validation: 1000003 is within 2",
        ),
        (lambda c: c["task"]["split_seeds"].update(selection=2000003), r"task.split_seeds.test: 2000003 is within 0"),
        (lambda c: c["model"].update(source="local", path="/nonexistent/model"), r"model.path: .*does not exist"),
        (lambda c: c["task"].update(dataset="no_such_task"), r"task.dataset"),
        (lambda c: c.update(colour="blue"), r"Additional properties are not allowed \('colour'"),
        (lambda c: c["rl"].update(aggregation="mean"), r"rl.aggregation: 'mean' is not one of"),
        (
            lambda c: c["variants"].update({"fast": {"of": "none", "rl": {"lr": -1}}}),
            r"variants.fast.rl.lr: -1 is less",
        ),
        (
            lambda c: c["variants"].update({"fast": {"of": "none", "rl": {"lrate": 1}}}),
            r"variants.fast.rl.lrate: not a",
        ),
        (lambda c: c["variants"].update({"fast": {"of": "nxt"}}), r"variants.fast.of: unknown method 'nxt'"),
        (lambda c: c["variants"].update({"next": {"of": "none"}}), r"variants.next: 'next' is already a method"),
        (lambda c: c["variants"].update({"Fast": {"of": "none"}}), r"variants: 'Fast' does not match"),
        (
            lambda c: c["variants"].update({"fast": {"of": "next", "rl": {"lr": 1.0}}}),
            r"variants.fast.rl: a variant of 'next' may override `jump` only \(jump arms share round 0",
        ),
        (
            lambda c: c["variants"].update({"fresh": {"of": "next", "jump": {"continuation": "merge"}}}),
            r"variants.fresh.jump.continuation: 'merge' is not one of",
        ),
        (
            lambda c: c["variants"].update({"odd": {"of": "none", "rl": {"snapshot_every": 3}}}),
            r"rl.snapshot_every: 3 does not divide rl.chunk_steps 4",
        ),
        (lambda c: c["rl"].update(mode="dense"), r"rl.mode: 'dense' is not one of \['lora', 'full'\]"),
        (lambda c: c["rl"].update(mode="full", kl_coef=0.1), r"rl.mode: full-parameter RL has no KL reference"),
        (
            lambda c: c["variants"].update({"none_fast": {"of": "none", "rl": {"mode": "full", "kl_coef": 0.1}}}),
            r"variants.none_fast.rl.mode: full-parameter RL has no KL reference model",
        ),
        (lambda c: c["rl"].update(lr_schedule="cosine"), r"rl.lr_decay_steps: required when rl.lr_schedule is"),
        (lambda c: c["rl"].update(micro_batch_tokens=0), r"rl.micro_batch_tokens: 0 is less than the minimum of 1"),
        (
            lambda c: c.update(rollout={"backend": "vllm"}, rl={**c["rl"], "mode": "full"}),
            r"rl.mode: full-parameter RL needs rollout.backend hf",
        ),
        (lambda c: c["runtime"].update(device="tpu"), r"runtime.device: 'tpu' is not one of"),
        (lambda c: c["resources"]["train"].update(mem_mb=-1), r"resources.train.mem_mb: -1 is less than the minimum"),
        (lambda c: c["resources"]["fit"].update(runtime=1.5), r"resources.fit.runtime: 1.5 is not of type 'integer'"),
        (lambda c: c["resources"]["data"].update(mem_mb="4G"), r"resources.data.mem_mb: '4G' is not of type 'integer'"),
        (lambda c: c["resources"].update(gpu={"gpu": 1}), r"resources: Additional properties are not allowed \('gpu'"),
        (lambda c: c.update(threads=2), r"<top level>: Additional properties are not allowed \('threads'"),
        (lambda c: c["runtime"].update(device="cuda"), r"resources.train.gpu: 0, but runtime.device is cuda"),
        (
            lambda c: c["extrapolators"]["next"].update(device="cuda"),
            r"resources.fit.gpu: 0, but extrapolators.next.device is cuda",
        ),
        (
            lambda c: (c["extrapolators"]["next"].update(device="cuda"), c["resources"]["fit"].update(gpu=1)),
            r"resources.weights.gpu: 0, but extrapolators.next.device is cuda and the held-out check",
        ),
        (lambda c: c.update(arms=["none", "fast"]), r"arms: unknown arm 'fast'"),
        (lambda c: c.update(arms=["next", "linear"]), r"arms: jump arms need `none`"),
    ],
)
def test_bad_values_are_rejected_naming_the_key(test_config, mutate, message):
    mutate(test_config)
    with pytest.raises(ConfigError, match=message):
        validate_config(test_config)


def test_defaults_are_filled(test_config):
    assert test_config["resources"]["evaluate"] == {"gpu": 0, "mem_mb": 1200, "runtime": 15, "cpus": 1}
    assert test_config["rl"]["advantage"] == "grpo"
    assert test_config["rl"]["clip_eps"] == 0.2
    assert test_config["jump"]["triplets"] == 1
    assert test_config["jump"]["continuation"] == "carry"


def test_every_registered_extrapolator_has_a_schema_block():
    import dataclasses

    import yaml

    from nextrl.config import SCHEMA_PATH, extrapolator_names
    from nextrl.extrapolators import REGISTRY

    assert extrapolator_names() == sorted(REGISTRY)
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    for name, method in REGISTRY.items():
        block = schema["properties"]["extrapolators"]["properties"][name]
        block = schema["$defs"][block["$ref"].rsplit("/", 1)[1]] if "$ref" in block else block
        assert set(block.get("properties", {})) == {field.name for field in dataclasses.fields(method.Options)}, name


def test_an_import_takes_jump_arms_one_seed_one_round_and_existing_paths(test_config, tmp_path):
    test_config.update(arms=["next"], seeds=[0], rounds=1, **{"import": {"run_dir": str(tmp_path / "nope"),
                                                                         "base_model": str(tmp_path)}})  # fmt: skip
    with pytest.raises(ConfigError, match="import.run_dir: .*nope is not a directory"):
        validate_config(test_config)
    test_config["import"]["run_dir"] = str(tmp_path)
    validate_config(test_config)  # jump arms need no `none` here
    for key, value, message in (("arms", ["none", "next"], "plain-RL arms \\['none'\\] cannot run"),
                                ("rounds", 2, "one seed and one round")):  # fmt: skip
        with pytest.raises(ConfigError, match=message):
            validate_config({**test_config, key: value})


def test_model_path_that_is_not_a_model(test_config, tmp_path):
    test_config["model"].update(source="local", path=str(tmp_path))
    with pytest.raises(ConfigError, match=r"model.path: .*not a model directory"):
        validate_config(test_config)


def test_variants_resolve_to_their_method_and_overrides(test_config):
    test_config["variants"] = {"none_fast": {"of": "none", "rl": {"lr": 0.01}},
                               "next_fresh": {"of": "next", "jump": {"continuation": "fresh"}}}  # fmt: skip
    test_config["arms"] = ["none", "next", "none_fast", "next_fresh"]
    validate_config(test_config)
    assert [arm_method(test_config, arm) for arm in test_config["arms"]] == ["none", "next", "none", "next"]
    assert plain_arms(test_config) == ["none", "none_fast"]
    fast = arm_config(test_config, "none_fast")
    assert fast["rl"]["lr"] == 0.01 and fast["rl"]["chunk_steps"] == test_config["rl"]["chunk_steps"]
    assert arm_config(test_config, "next_fresh")["jump"]["continuation"] == "fresh"
    assert arm_config(test_config, "next") == test_config
    assert test_config["rl"]["lr"] == 2.0e-3 and test_config["jump"]["continuation"] == "carry"
