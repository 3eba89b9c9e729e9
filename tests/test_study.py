"""Study storage, identity checks on resume, and samplers that do not repeat themselves."""

import optuna
import pytest

from search.space import load_space
from search.study import (
    StudyMismatch,
    absolute_sqlite_url,
    make_pruner,
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


def _pruned_at(study, curve):
    """Report a best-so-far curve epoch by epoch (epochs count from 1, as in `fit`);
    the epoch at which the pruner stops the trial, or None when it runs to the end."""
    trial = study.ask()
    for epoch, value in enumerate(curve, start=1):
        trial.report(value, epoch)
        if trial.should_prune():
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return epoch
    study.tell(trial, curve[-1])
    return None


def test_halving_keeps_the_top_third_at_epochs_1_3_and_9():
    study = optuna.create_study(direction="maximize", pruner=make_pruner("halving", 12))
    # Fewer than 3 trials at a rung: only a trial as good as the best there goes on.
    assert _pruned_at(study, [0.50] * 12) is None
    assert _pruned_at(study, [0.40] * 12) == 1
    assert _pruned_at(study, [0.60, 0.70, 0.70, 0.72] + [0.72] * 8) is None
    # Rung at epoch 1 now has 4 values (0.5, 0.4, 0.6, 0.55): the top 4 // 3 = 1 goes on.
    assert _pruned_at(study, [0.55] * 12) == 1
    # Good at epoch 1, but at epoch 3 below the best there (0.70 of the third trial).
    assert _pruned_at(study, [0.65, 0.66, 0.68] + [0.68] * 9) == 3
    # Among the top third at epoch 1 (0.66, 0.65 of 6) and at epoch 3 (0.71 of 0.5, 0.70,
    # 0.68, 0.71), but at epoch 9 behind 0.72, the top 3 // 3 = 1 of 0.5, 0.72, 0.71.
    assert _pruned_at(study, [0.66, 0.71, 0.71] + [0.71] * 9) == 9


def test_halving_first_judges_a_tenth_of_the_epochs_in():
    study = optuna.create_study(direction="maximize", pruner=make_pruner("halving", 20))
    assert _pruned_at(study, [0.5] * 20) is None
    # Worse than the first trial from epoch 1, judged at epoch 20 // 10 = 2.
    assert _pruned_at(study, [0.4] * 20) == 2


def test_median_waits_for_3_trials_and_a_quarter_of_the_epochs():
    study = optuna.create_study(direction="maximize", pruner=make_pruner("median", 8))
    for _ in range(3):
        assert _pruned_at(study, [0.5] * 8) is None
    # Behind from the start: judged from epoch 8 // 4 = 2 on, never at epoch 1.
    assert _pruned_at(study, [0.1] * 8) == 2
    assert _pruned_at(study, [0.1, 0.6] + [0.6] * 6) is None


def test_progress_prints_only_trials_that_end_during_this_run(capsys):
    from search.runner import Progress

    study = optuna.create_study(direction="maximize")
    study.optimize(lambda trial: 0.5, n_trials=2)
    progress = Progress(study, budget=3)
    assert capsys.readouterr().out == ""

    study.optimize(lambda trial: 0.75, n_trials=1)
    progress.poll()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    assert lines[0].split() == [
        "[",
        "3/3]",
        "trial",
        "2",
        "COMPLETE",
        "val",
        "0.750",
        "best",
        "0.750",
        "(trial",
        "2)",
    ]


def test_progress_tells_a_failed_trial_from_a_lost_one(capsys):
    from search.runner import Progress

    study = optuna.create_study(direction="maximize")
    progress = Progress(study, budget=2)

    def raises(trial):
        trial.set_user_attr("error", "ValueError: lr must be positive")
        raise ValueError("lr must be positive")

    study.optimize(raises, n_trials=1, catch=(ValueError,))
    lost = study.ask()
    study.tell(lost, state=optuna.trial.TrialState.FAIL)
    progress.poll()
    assert capsys.readouterr().out.splitlines() == [
        "[  0/2] trial   0 FAIL     failed           best -; ValueError: lr must be positive",
        "[  0/2] trial   1 FAIL     worker lost; retried best -",
    ]
