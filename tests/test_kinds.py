"""The table of job kinds: each kind's config with its defaults, checks, run, summary and whether
it resumes; strict configs from users, lenient ones from stored runs; one answer to "can this
run be resumed" for the Runs table and the live panel."""
from __future__ import annotations

import dataclasses

import pytest

from stcore import api, jobs, kinds
from stcore.errors import ConfigError, StcoreError
from stcore.fields import from_values
from stcore.kinds import KINDS

NAMES = sorted(KINDS)


def test_the_roles_of_runs_are_the_kinds():
    assert jobs.ROLES == tuple(KINDS)
    assert set(KINDS) == {"teacher", "student", "pseudo-label", "evaluate", "embed", "label-issues", "duplicates",
                          "map", "refresh", "predict"}
    assert all(k.name == name for name, k in KINDS.items())


@pytest.mark.parametrize("name", NAMES)
def test_every_kind_has_defaults_checks_run_and_summary(name):
    kind = KINDS[name]
    cfg = kind.config({})
    assert dataclasses.is_dataclass(cfg) and dataclasses.asdict(cfg)["device"] == "cpu"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.device = "cuda"  # a config is data: frozen
    assert callable(kind.check) and callable(kind.run) and callable(kind.summary)
    assert isinstance(kind.resumes, bool)


@pytest.mark.parametrize("name", NAMES)
def test_a_typo_in_a_users_config_is_an_error(name):
    with pytest.raises(ConfigError, match="unknown config key.*batchsize"):
        KINDS[name].config({"batchsize": 64})


@pytest.mark.parametrize("name", NAMES)
def test_a_stored_runs_config_is_read_leniently(name):
    """Keys an older (or newer) version stored are dropped; keys it left out take the defaults."""
    cfg = KINDS[name].config({"retired_option": 1}, strict=False)
    assert cfg == KINDS[name].config({}, strict=False)


@pytest.mark.parametrize("name, values, message", [
    ("pseudo-label", {"batch_size": "big"}, "'batch_size' must be int"),
    ("duplicates", {"threshold": True}, "'threshold' must be float"),
    ("embed", {"epochs": "ten"}, "'epochs' must be float"),
    ("map", {"method": 3}, "'method' must be str"),
    ("teacher", {"lr": "fast"}, "'lr' must be float"),
])
def test_a_wrong_type_is_an_error(name, values, message):
    with pytest.raises(ConfigError, match=message):
        KINDS[name].config(values)


def test_defaults_live_in_the_table_and_reach_the_cli_and_the_api():
    assert api.job_defaults("pseudo-label")["batch_size"] == 1024
    assert api.job_defaults("embed")["batch_size"] == 256
    assert api.job_defaults("duplicates")["threshold"] == 0.98
    assert api.job_defaults("map")["method"] == "auto"
    assert api.job_defaults("teacher")["batch_size"] == 64 and api.job_defaults("teacher")["role"] == "teacher"
    assert api.job_defaults("student")["role"] == "student"
    from stcore.cli import build_parser
    args = build_parser().parse_args(["pseudo-label", "P"])
    assert args.batch_size is None  # not repeated in the CLI: the kind's default applies


def test_an_int_is_accepted_for_a_float_and_none_for_an_optional():
    cfg = from_values(kinds.EmbedConfig, {"epochs": 2, "image_size": None})
    assert cfg.epochs == 2.0 and isinstance(cfg.epochs, float) and cfg.image_size is None


def test_only_the_kinds_that_go_on_from_where_they_stopped_resume():
    assert {n for n, k in KINDS.items() if k.resumes} == {"teacher", "student", "embed"}


@pytest.mark.parametrize("role", NAMES)
@pytest.mark.parametrize("state", ["queued", "running", "finished", "interrupted", "cancelled", "failed"])
def test_resumable_is_the_kinds_answer_for_a_stopped_run(role, state):
    """The Runs table and the live panel both ask api.resumable, so they cannot disagree."""
    expected = KINDS[role].resumes and state in ("interrupted", "cancelled", "failed")
    assert api.resumable({"role": role, "state": state}) is expected


def test_an_unknown_role_is_not_resumable_and_has_no_summary():
    row = {"role": "from-the-future", "state": "failed", "result": {"x": 1}}
    assert api.resumable(row) is False and api.summary({**row, "state": "finished"}) is None


def test_the_train_page_asks_the_api_whether_a_run_resumes():
    from pathlib import Path
    page = (Path(__file__).resolve().parents[1] / "dashboard" / "views" / "train.py").read_text()
    assert page.count("api.resumable(") == 2 and "RESUMES" not in page


def test_summaries_are_one_line():
    results = {
        "teacher": {"accuracy": 0.8123},
        "pseudo-label": {"items": 10, "teacher_run": "teacher-1", "seconds": 1.0, "images_per_s": 10.0,
                         "accuracy": {"accuracy": 0.9, "accuracy_above_0.9": 0.95, "n_above_0.9": 5}},
        "embed": {"rows": {"train": 3, "test": 1}, "backbone": "pixels", "seconds": 0.1, "images_per_s": 40,
                  "dims": 8, "file": "pixels.npy"},
        "label-issues": {"issues": [1, 2], "checked": 100, "over": "pixels"},
        "duplicates": {"pairs": [1], "threshold": 0.98, "over": "pixels", "images": 40},
        "map": {"rows": 30, "embedding": "pixels", "method": "pca", "seconds": 0.2},
    }
    for name, result in results.items():
        line = api.summary({"role": name, "state": "finished", "result": result})
        assert line and "\n" not in line, name
    assert api.summary({"role": "teacher", "state": "finished", "result": {"accuracy": 0.8123}}) == \
        "test accuracy 0.8123"
    assert api.summary({"role": "teacher", "state": "failed", "result": None}) is None


def test_an_unknown_kind_is_refused(small_project):
    with pytest.raises(StcoreError, match="unknown job kind 'critic'"):
        api.start_job(small_project, "critic", {})


@pytest.mark.parametrize("name, values, message", [
    ("pseudo-label", {"batch_size": 0}, "--batch-size must be positive"),
    ("duplicates", {"threshold": 1.5}, "--threshold must be within"),
    ("map", {"method": "tsne"}, "unknown map method 'tsne'"),
    ("embed", {"backbone": "pixels", "epochs": 3.0}, "--epochs and --minutes are the ssl backbone's"),
    ("evaluate", {"run": "nope-1"}, "nope-1"),
    ("teacher", {"stpes": 10}, "unknown config key"),
])
def test_checks_refuse_before_any_run_is_queued(small_project, name, values, message):
    with pytest.raises(StcoreError, match=message):
        api.start_job(small_project, name, values)
    assert api.runs(small_project) == []


def test_a_queued_runs_config_is_the_whole_config_with_the_projects_choices(small_project, monkeypatch):
    monkeypatch.setattr(jobs, "spawn", lambda project, run_id: 0)  # queue the run, start no worker
    run_id = api.start_duplicates(small_project)
    cfg = api.run(small_project, run_id)["config"]
    assert cfg == {"device": "cpu", "threshold": 0.98}
    assert KINDS["duplicates"].config(cfg, strict=False) == kinds.DuplicatesConfig()


def test_a_stored_embed_config_of_an_older_version_still_reads(small_project):
    """Stored before every field was written: missing keys take the defaults."""
    old = {"device": "cpu", "nproc": 1, "backbone": "pixels", "batch_size": 256, "weights": None, "image_size": None}
    cfg = KINDS["embed"].config(old, strict=False)
    assert (cfg.backbone, cfg.batch_size, cfg.seed, cfg.epochs) == ("pixels", 256, 0, None)
