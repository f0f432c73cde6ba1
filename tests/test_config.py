"""The run config: one frozen dataclass, built through make_config, which rejects typos and
fills in what the user left out from the method's own defaults."""
import dataclasses

import pytest

from stcore.config import ConfigError, TrainConfig, make_config, stored_config, to_dict
from stcore.methods import METHODS


def test_defaults_are_valid_and_frozen():
    cfg = make_config()
    assert (cfg.role, cfg.method, cfg.steps) == ("teacher", "supervised", 400)
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
    ({"role": "student", "rounds": 0}, "rounds must be at least 1"),
    ({"strength": 1.5}, "augmentation strength"),
    ({"strength": 0.0}, "augmentation strength"),
    ({"steps": 0}, "steps must be positive"),
    ({"epochs": -1.0}, "epochs must be positive"),
    ({"steps": 10, "epochs": 1.0}, "not both"),
    ({"ema_decay": 1.0}, "ema decay"),
    ({"lr": 0.0}, "lr"),
    ({"weight_decay": -1e-4}, "weight decay must be 0 or more"),
    ({"unlabeled_weight": -1.0}, "unlabeled weight must be 0 or more"),
    ({"corrected_weight": 0.0}, "corrected weight must be positive"),
    ({"eval_every": 0}, "eval_every must be positive"),
])
def test_make_config_rejects_bad_values(values, message):
    with pytest.raises(ConfigError, match=message):
        make_config(values)


def test_make_config_accepts_ints_for_floats_and_round_trips():
    cfg = make_config({"lr": 1, "role": "student", "rounds": 2, "balanced": True})
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)
    assert make_config(to_dict(cfg)) == cfg


@pytest.mark.parametrize("values, expected", [
    ({"role": "student"}, ("labelprop", 3, 0.3, 1800)),
    ({"role": "student", "method": "consistency"}, ("consistency", 1, 1.0, 600)),
    ({"role": "student", "method": "consistency", "rounds": 2}, ("consistency", 2, 1.0, 1200)),
    ({"role": "student", "method": "self-training", "steps": 50}, ("self-training", 1, 1.0, 50)),
    ({"role": "student", "strength": 0.8}, ("labelprop", 3, 0.8, 1800)),
])
def test_what_is_left_out_comes_from_the_method(values, expected):
    cfg = make_config(values)
    assert (cfg.method, cfg.rounds, cfg.strength, cfg.steps) == expected


def test_epochs_instead_of_steps_leave_the_steps_to_the_data():
    cfg = make_config(role="student", epochs=2.0)
    assert cfg.epochs == 2.0 and cfg.steps is None


@pytest.mark.parametrize("alias, expected", [
    ("freematch", {"method": "consistency", "adaptive_threshold": True}),
    ("fixmatch", {"method": "consistency", "adaptive_threshold": False, "threshold": 0.9}),
    ("meanteacher", {"method": "consistency", "adaptive_threshold": False, "threshold": 0.0}),
    ("pseudo", {"method": "self-training", "temperature": 0.0}),
    ("soft", {"method": "self-training", "temperature": 1.0}),
])
def test_older_method_names_are_a_method_with_options(alias, expected):
    cfg = to_dict(make_config(role="student", method=alias))
    assert {k: cfg[k] for k in expected} == expected


def test_what_the_user_gives_wins_over_an_aliases_options():
    assert make_config(role="student", method="fixmatch", threshold=0.7).threshold == 0.7


@pytest.mark.parametrize("stored, expected", [
    # stored by the previous version: '' and 0 meant "the method's default"
    ({"role": "student", "method": "", "rounds": 0, "strength": 0.0, "steps": 0, "epochs": 0.0},
     ("labelprop", 3, 0.3, 1800, 0.0)),
    # stored before students had a strength setting: they augmented at full strength
    ({"role": "student", "method": "labelprop", "steps": 300}, ("labelprop", 3, 1.0, 300, 0.0)),
    ({"role": "student", "method": "soft", "temperature": 0.0, "strength": 1.0},
     ("self-training", 1, 1.0, 600, 1.0)),
])
def test_stored_configs_of_older_versions_keep_their_meaning(stored, expected):
    cfg = stored_config(stored)
    assert (cfg.method, cfg.rounds, cfg.strength, cfg.steps, cfg.temperature) == expected


def test_an_old_meanteacher_ignored_its_stored_threshold():
    assert stored_config({"role": "student", "method": "meanteacher", "threshold": 0.9}).threshold == 0.0


def test_every_method_is_valid_with_its_defaults():
    for name in METHODS:
        assert make_config(role="student", method=name).method == name
    assert TrainConfig(role="student", method="labelprop").rounds == 1  # the dataclass itself sets no method defaults


def test_every_train_flag_is_a_config_field_and_parses():
    from stcore.cli import TRAIN_FLAGS, build_parser, train_values
    fields = set(to_dict(make_config()))
    assert set(TRAIN_FLAGS) <= fields
    a = build_parser().parse_args(["train", "P", "--role", "student", "--method", "consistency", "--rounds", "3",
                                   "--balanced", "--no-distribution-alignment", "--target-model", "student",
                                   "--label-aug", "strong", "--temperature", "0.5", "--strength", "0.6",
                                   "--no-adaptive-threshold"])
    cfg = make_config(train_values(a))
    assert (cfg.rounds, cfg.balanced, cfg.distribution_alignment, cfg.target_model, cfg.label_aug,
            cfg.temperature, cfg.strength, cfg.adaptive_threshold) == (3, True, False, "student", "strong", 0.5,
                                                                     0.6, False)


@pytest.mark.parametrize("key", ["lr", "threshold", "unlabeled_weight", "corrected_weight", "weight_decay"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_numbers_are_refused(key, value):
    with pytest.raises(ConfigError, match=f"{key} must be a finite number"):
        make_config({key: value})
