import pytest

from nextrl.config import ConfigError, validate_config


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: c["rl"].update(chunk_steps=0), r"rl.chunk_steps: 0 is less than the minimum of 1"),
        (lambda c: c["rl"].update(chunk_steps=-3), r"rl.chunk_steps"),
        (lambda c: c["rl"].update(snapshot_every=3), r"rl.snapshot_every: 3 does not divide rl.chunk_steps 4"),
        (lambda c: c["next"].update(alphas=[]), r"next.alphas"),
        (lambda c: c["next"].update(horizon=3, triplets=1) or c["rl"].update(snapshot_every=2), r"next.horizon: 3"),
        (lambda c: c["model"].update(source="local", path="/nonexistent/model"), r"model.path: .*does not exist"),
        (lambda c: c["task"].update(dataset="no_such_task"), r"task.dataset"),
        (lambda c: c.update(colour="blue"), r"Additional properties are not allowed \('colour'"),
        (lambda c: c["rl"].update(aggregation="mean"), r"rl.aggregation: 'mean' is not one of"),
    ],
)
def test_bad_values_are_rejected_naming_the_key(test_config, mutate, message):
    mutate(test_config)
    with pytest.raises(ConfigError, match=message):
        validate_config(test_config)


def test_defaults_are_filled(test_config):
    assert test_config["rl"]["advantage"] == "grpo"
    assert test_config["rl"]["clip_eps"] == 0.2
    assert test_config["next"]["triplets"] == 1


def test_model_path_that_is_not_a_model(test_config, tmp_path):
    test_config["model"].update(source="local", path=str(tmp_path))
    with pytest.raises(ConfigError, match=r"model.path: .*not a model directory"):
        validate_config(test_config)
