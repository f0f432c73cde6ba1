"""The run config: one frozen dataclass, built through make_config, which rejects typos."""
import dataclasses

import pytest

from stcore.config import METHODS, ConfigError, TrainConfig, make_config, to_dict


def test_defaults_are_valid_and_frozen():
    cfg = make_config()
    assert cfg.role == "teacher" and cfg.resolved_method == "supervised"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 1.0


@pytest.mark.parametrize("values, message", [
    ({"learning_rate": 0.1}, "unknown config key"),
    ({"steps": "100"}, "must be int"),
    ({"steps": 1.5}, "must be int"),
    ({"balanced": 1}, "must be bool"),
    ({"rounds": True}, "must be int"),
    ({"role": "critic"}, "role must be one of"),
    ({"role": "teacher", "method": "fixmatch"}, "not a teacher method"),
    ({"role": "student", "method": "mixmatch"}, "not a student method"),
    ({"threshold": 1.5}, "threshold"),
    ({"temperature": -1.0}, "temperature"),
    ({"target_model": "teacher"}, "target model"),
    ({"label_aug": "medium"}, "label augmentation"),
    ({"rounds": -1}, "rounds"),
    ({"strength": 1.5}, "augmentation strength"),
    ({"strength": -0.1}, "augmentation strength"),
    ({"ema_decay": 1.0}, "ema decay"),
    ({"lr": 0.0}, "lr"),
    ({"weight_decay": -1e-4}, "weight decay must be 0 or more"),
    ({"unlabeled_weight": -1.0}, "unlabeled weight must be 0 or more"),
    ({"corrected_weight": 0.0}, "corrected weight must be positive"),
])
def test_make_config_rejects_bad_values(values, message):
    with pytest.raises(ConfigError, match=message):
        make_config(values)


def test_make_config_accepts_ints_for_floats_and_round_trips():
    cfg = make_config({"lr": 1, "role": "student", "rounds": 2, "balanced": True})
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)
    assert make_config(to_dict(cfg)) == cfg


@pytest.mark.parametrize("method, temperature, expected", [
    ("", 0.0, 0.0), ("fixmatch", 0.0, 0.0), ("soft", 0.0, 1.0), ("soft", 0.5, 0.5), ("freematch", 0.7, 0.7),
])
def test_resolved_temperature(method, temperature, expected):
    cfg = make_config(role="student", method=method, temperature=temperature)
    assert cfg.resolved_temperature == expected


@pytest.mark.parametrize("method, strength, expected", [
    ("", 0.0, 0.3), ("labelprop", 0.8, 0.8), ("fixmatch", 0.0, 1.0), ("freematch", 0.5, 0.5),
])
def test_resolved_strength(method, strength, expected):
    assert make_config(role="student", method=method, strength=strength).resolved_strength == expected


def test_student_default_method_is_the_first_listed():
    assert make_config(role="student").resolved_method == METHODS["student"][0]
    assert TrainConfig(role="student").method == ""


def test_every_train_flag_is_a_config_field_and_parses():
    from stcore.cli import TRAIN_FLAGS, build_parser
    fields = set(to_dict(make_config()))
    assert set(TRAIN_FLAGS) <= fields
    a = build_parser().parse_args(["train", "P", "--role", "student", "--method", "fixmatch", "--rounds", "3",
                                   "--balanced", "--no-distribution-alignment", "--target-model", "student",
                                   "--label-aug", "strong", "--temperature", "0.5", "--strength", "0.6"])
    values = {k: getattr(a, k) for k in TRAIN_FLAGS if getattr(a, k) is not None}
    cfg = make_config(values, role="student")
    assert (cfg.rounds, cfg.balanced, cfg.distribution_alignment, cfg.target_model, cfg.label_aug,
            cfg.resolved_temperature, cfg.strength) == (3, True, False, "student", "strong", 0.5, 0.6)


@pytest.mark.parametrize("key", ["lr", "threshold", "unlabeled_weight", "corrected_weight", "weight_decay"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_numbers_are_refused(key, value):
    with pytest.raises(ConfigError, match=f"{key} must be a finite number"):
        make_config({key: value})
