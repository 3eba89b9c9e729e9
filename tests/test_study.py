"""Study storage, identity checks on resume, and samplers that do not repeat themselves."""

import optuna
import pytest

from search.space import load_space
from search.study import (
    StudyMismatch,
    absolute_sqlite_url,
    make_sampler,
    open_study,
    sampler_seed,
)

IDENTITY = {"method": "ebkd", "dataset": "basicmotions", "preset": "quick", "epochs": 4}


def test_relative_sqlite_urls_become_absolute(tmp_path):
    assert absolute_sqlite_url("sqlite:///optuna.db", tmp_path) == (
        f"sqlite:///{tmp_path.resolve()}/optuna.db"
    )
    assert absolute_sqlite_url("sqlite:////abs/x.db", tmp_path) == "sqlite:////abs/x.db"
    assert absolute_sqlite_url("postgresql://u@127.0.0.1/db") == "postgresql://u@127.0.0.1/db"


def test_resume_with_other_epochs_is_refused_naming_them(tmp_path):
    url = f"sqlite:///{tmp_path}/optuna.db"
    space = load_space("ebkd")
    open_study(url, "s", IDENTITY, space)

    with pytest.raises(StudyMismatch, match="epochs=4, this command has epochs=9.*--study"):
        open_study(url, "s", {**IDENTITY, "epochs": 9}, space)


def test_resume_with_a_changed_space_is_refused_naming_the_parameter(tmp_path):
    url = f"sqlite:///{tmp_path}/optuna.db"
    open_study(url, "s", IDENTITY, load_space("ebkd"))

    changed = load_space("ebkd", assignments=["beta=0.3"])
    with pytest.raises(StudyMismatch, match="parameter 'beta' changed"):
        open_study(url, "s", IDENTITY, changed)
    assert open_study(url, "s", IDENTITY, load_space("ebkd")).study_name == "s"


def test_sampler_seeds_differ_per_worker_and_resume():
    seeds = {sampler_seed(0, worker, done) for worker in range(4) for done in (0, 5, 10)}
    assert len(seeds) == 12
    assert sampler_seed(1, 0, 0) != sampler_seed(0, 0, 0)


def _run(study, sampler_seed_value, n):
    study.sampler = make_sampler(sampler_seed_value)
    study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=n)


def test_a_resumed_study_does_not_repeat_the_points_already_tried():
    study = optuna.create_study(direction="maximize")
    _run(study, sampler_seed(0, 0, 0), 3)
    _run(study, sampler_seed(0, 0, len(study.trials)), 3)

    points = [t.params["x"] for t in study.trials]
    assert len(set(points)) == 6


def test_reusing_the_same_seed_on_resume_would_repeat_points():
    # The failure the derived seed avoids: a reloaded sampler with the same seed starts
    # its random start-up phase over and proposes the same first point again.
    study = optuna.create_study(direction="maximize")
    _run(study, 7, 3)
    _run(study, 7, 1)
    assert study.trials[3].params["x"] == study.trials[0].params["x"]
