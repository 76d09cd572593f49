"""The trainer's configuration is one source: the server's flags are generated from it, out-of-bounds values stop
the server naming the flag, and its description (api/generated/trainer-config.json) says what the flags are."""
import dataclasses
import json

import pytest

from rlkube_trainer import config
from rlkube_trainer.config import TrainerConfig
from rlkube_trainer.server import parse_args


def test_the_servers_flags_are_every_setting_with_its_default():
    a, cfg = parse_args(["--checkpoint-dir", "/tmp/x"])
    assert cfg == TrainerConfig(checkpoint_dir="/tmp/x")
    for f in config.flag_fields():
        assert hasattr(a, f.name), f.name
    assert not hasattr(a, "device")  # each rank's, not a flag


def test_flags_reach_the_config_with_their_types():
    _, cfg = parse_args(["--checkpoint-dir", "d", "--adam-beta1", "0.8", "--minibatches", "3", "--micro-batch", "5",
                         "--micro-batch-tokens", "4096", "--max-grad-norm", "0.5", "--skip-uniform-groups",
                         "--check-seed", "7", "--checkpoint-every", "1"])
    assert (cfg.adam_beta1, cfg.minibatches, cfg.micro_batch, cfg.max_grad_norm) == (0.8, 3, 5, 0.5)
    assert cfg.micro_batch_tokens == 4096
    assert cfg.skip_uniform_groups is True and cfg.check_seed == 7 and cfg.checkpoint_every == 1
    assert parse_args(["--checkpoint-dir", "d", "--no-skip-uniform-groups"])[1].skip_uniform_groups is False


@pytest.mark.parametrize("flag,value", [("--clip-low", "1"), ("--adam-beta2", "1.0"), ("--lr", "0"),
                                        ("--minibatches", "0"), ("--max-grad-norm", "-1"), ("--keep-policies", "-1"),
                                        ("--micro-batch-tokens", "0")])
def test_a_value_out_of_bounds_stops_the_server_naming_the_flag(flag, value, capsys):
    with pytest.raises(SystemExit) as stop:
        parse_args(["--checkpoint-dir", "d", flag, value])
    assert stop.value.code == 2
    assert f"{flag} must be" in capsys.readouterr().err


def test_the_checkpoint_dir_is_required(capsys):
    with pytest.raises(SystemExit):
        parse_args([])
    assert "--checkpoint-dir" in capsys.readouterr().err


def test_validate_checks_every_bound():
    with pytest.raises(ValueError, match="--clip-low must be >= 0 and < 1"):
        TrainerConfig(checkpoint_dir="d", clip_low=1.0).validate()
    TrainerConfig(checkpoint_dir="d", clip_low=0.0, keep_policies=0).validate()


def test_the_description_lists_every_flag_with_its_default_and_bounds():
    settings = {s["name"]: s for s in json.loads(json.dumps(config.describe()))["settings"]}
    assert set(settings) == {f.name for f in config.flag_fields()}
    for f in config.flag_fields():
        s = settings[f.name]
        assert s["flag"] == "--" + f.name.replace("_", "-")
        if f.default is dataclasses.MISSING:
            assert s["required"] is True
        else:
            assert s["default"] == f.default
        assert s.get("bounds", {}) == f.metadata["bounds"]
    assert settings["adam_beta1"] == {"name": "adam_beta1", "flag": "--adam-beta1", "type": "number", "help": "Adam's beta1",
                                      "default": 0.9, "bounds": {"minimum": 0, "exclusiveMaximum": 1}}
    assert settings["skip_uniform_groups"]["type"] == "boolean"
    assert settings["check_seed"]["type"] == "integer" and settings["check_seed"]["nullable"] is True


def test_describe_prints_the_description(capsys):
    assert config.main(["describe"]) == 0
    assert json.loads(capsys.readouterr().out) == config.describe()
