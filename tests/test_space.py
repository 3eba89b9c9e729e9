"""Search spaces: loading the shipped files, every validation error, and Optuna suggestions."""

import math

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from mmkd.methods import METHODS
from search.presets import PRESETS
from search.space import (
    SHARED_KEYS,
    SpaceError,
    describe_difference,
    load_space,
    space_json,
    suggest,
)

SHARED = {
    "optimizer": {"value": "sgd"},
    "lr": {"type": "float", "low": 0.005, "high": 0.1, "log": True},
    "momentum": {"value": 0.9},
    "weight_decay": {"type": "float", "low": 1e-5, "high": 1e-3, "log": True},
    "schedule": {"value": "cosine"},
    "batch_size": {"value": 16},
    "grad_clip": {"value": 5.0},
}


def write_space(tmp_path, text, name="space.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def space_error(method, *args, **kwargs) -> str:
    with pytest.raises(SpaceError) as caught:
        load_space(method, *args, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_ebkd_space_is_the_shared_part_plus_its_own_entries():
    space = load_space("ebkd")

    assert space == {
        **SHARED,
        "lambda1": {"type": "float", "low": 0.1, "high": 1.0, "log": False},
        "lambda2": {"type": "float", "low": 0.1, "high": 10.0, "log": True},
        "lambda3": {"type": "float", "low": 0.01, "high": 100.0, "log": True},
        "temperature": {"type": "float", "low": 1.0, "high": 10.0, "log": False},
        "beta": {"type": "float", "low": 0.0, "high": 1.0, "log": False},
        "heads": {"value": 4},
        "branches": {"value": "sig+gaf"},
    }
    assert list(space)[: len(SHARED_KEYS)] == list(SHARED_KEYS)


def test_student_space_is_the_shared_part_plus_branches():
    assert load_space("student") == {**SHARED, "branches": {"value": "sig"}}


@pytest.mark.parametrize("method", list(METHODS))
def test_every_registered_method_has_a_valid_space(method):
    space = load_space(method)

    assert set(space) <= {*SHARED_KEYS, *METHODS[method].knobs, "branches"}
    assert space["branches"] == {"value": METHODS[method].branches}


def test_preset_values_are_fixed_over_the_files():
    space = load_space("ebkd", fixed=PRESETS["paper"].fixed)

    assert space["optimizer"] == {"value": "sgd"}
    assert space["weight_decay"] == {"value": 1e-4}
    assert space["schedule"] == {"value": "step"}
    assert space["batch_size"] == {"value": 64}
    assert space["lr"] == SHARED["lr"]


def test_assignments_fix_values_and_win_over_the_preset():
    space = load_space(
        "ebkd",
        fixed=PRESETS["paper"].fixed,
        assignments=["lr=0.01", "optimizer=adamw", "batch_size=32", "heads=2"],
    )

    assert space["lr"] == {"value": 0.01}
    assert space["optimizer"] == {"value": "adamw"}
    assert space["batch_size"] == {"value": 32}
    assert space["heads"] == {"value": 2}


def test_assignment_gives_the_student_the_image_branch():
    space = load_space("student", assignments=["branches=sig+gaf"])

    assert space["branches"] == {"value": "sig+gaf"}


def test_assignment_reads_exponent_notation_as_a_number():
    assert load_space("ebkd", assignments=["lr=1e-2"])["lr"] == {"value": 0.01}


def test_space_file_reads_exponent_notation_as_a_number(tmp_path):
    path = write_space(tmp_path, "lambda3: {type: float, low: 1e-2, high: 1e2, log: true}\n")

    space = load_space("ebkd", path)

    assert space["lambda3"] == {"type": "float", "low": 0.01, "high": 100.0, "log": True}


def test_space_file_replaces_the_methods_own_file_but_keeps_the_shared_part(tmp_path):
    path = write_space(tmp_path, "beta: 0.25\n")

    space = load_space("ebkd", path)

    assert space == {**SHARED, "beta": {"value": 0.25}, "branches": {"value": "sig+gaf"}}


def test_empty_space_file_leaves_the_shared_part_and_the_methods_branches(tmp_path):
    space = load_space("ebkd", write_space(tmp_path, "# nothing here\n"))

    assert space == {**SHARED, "branches": {"value": "sig+gaf"}}


def test_whole_float_bounds_of_an_int_range_become_ints(tmp_path):
    path = write_space(tmp_path, "heads: {type: int, low: 1.0, high: 8, step: 1}\n")

    assert load_space("ebkd", path)["heads"] == {
        "type": "int",
        "low": 1,
        "high": 8,
        "log": False,
        "step": 1,
    }


def test_missing_file_is_named(tmp_path):
    path = tmp_path / "missing.yaml"

    message = space_error("ebkd", path)

    assert str(path) in message
    assert "cannot read" in message


def test_unreadable_file_is_named(tmp_path):
    path = tmp_path / "a-folder.yaml"
    path.mkdir()

    message = space_error("ebkd", path)

    assert str(path) in message
    assert "cannot read" in message


def test_binary_file_is_named(tmp_path):
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00lr")

    assert str(path) in space_error("ebkd", path)


def test_invalid_yaml_is_named_with_its_line(tmp_path):
    path = write_space(tmp_path, "beta: 0.5\nlr: {type: float, low: 0.01\n")

    message = space_error("ebkd", path)

    assert str(path) in message
    assert "not valid YAML" in message
    assert "line" in message


def test_yaml_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    path = write_space(
        tmp_path, f'beta: !!python/object/apply:os.mkdir ["{marker}"]\n', name="evil.yaml"
    )

    message = space_error("ebkd", path)

    assert message == (
        f"{path}: a YAML tag that is not plain data at line 1: could not determine a "
        "constructor for the tag 'tag:yaml.org,2002:python/object/apply:os.mkdir'"
    )
    assert not marker.exists()


def test_top_level_must_be_a_mapping(tmp_path):
    path = write_space(tmp_path, "- lr\n- beta\n")

    message = space_error("ebkd", path)

    assert str(path) in message
    assert "mapping" in message


# Each case: space file text, the key the message must name, and a phrase it must contain.
FILE_ERRORS = {
    "unknown parameter": ("lamda3: 1.0\n", "lamda3", "unknown parameter"),
    "unknown entry field": (
        "lr: {type: float, low: 0.01, high: 0.1, logg: true}\n",
        "lr",
        "logg",
    ),
    "unknown type": ("lr: {type: double, low: 0.01, high: 0.1}\n", "lr", "type must be"),
    "missing bound": ("lr: {type: float, low: 0.01}\n", "lr", "'high'"),
    "low above high": ("lr: {type: float, low: 0.2, high: 0.1}\n", "lr", "greater than high"),
    "log with zero low": ("lr: {type: float, low: 0.0, high: 0.1, log: true}\n", "lr", "low > 0"),
    "log with negative low": (
        "lambda3: {type: float, low: -1.0, high: 1.0, log: true}\n",
        "lambda3",
        "low > 0",
    ),
    "log not a bool": ("lr: {type: float, low: 0.01, high: 0.1, log: yes please}\n", "lr", "log"),
    "non-finite bound": ("lr: {type: float, low: .nan, high: 0.1}\n", "lr", "finite"),
    "empty choices": ("optimizer: {type: categorical, choices: []}\n", "optimizer", "non-empty"),
    "choices not a list": ("optimizer: {type: categorical, choices: sgd}\n", "optimizer", "list"),
    "repeated choices": (
        "optimizer: {type: categorical, choices: [sgd, sgd]}\n",
        "optimizer",
        "repeat",
    ),
    "string for a float": ("lr: fast\n", "lr", "expected a number"),
    "bool for a float": ("lr: true\n", "lr", "expected a number"),
    "fraction for an int": ("batch_size: 2.5\n", "batch_size", "whole number"),
    "infinite fixed value": ("batch_size: .inf\n", "batch_size", "finite"),
    "unknown string choice": ("optimizer: rmsprop\n", "optimizer", "rmsprop"),
    "unknown categorical choice": (
        "optimizer: {type: categorical, choices: [sgd, rmsprop]}\n",
        "optimizer",
        "rmsprop",
    ),
    "number for a string": ("schedule: 3\n", "schedule", "not one of"),
    "int range with fractional bounds": (
        "batch_size: {type: int, low: 8.5, high: 64}\n",
        "batch_size",
        "whole number",
    ),
    "int range with fractional step": (
        "batch_size: {type: int, low: 16, high: 64, step: 0.5}\n",
        "batch_size",
        "whole number",
    ),
    "non-positive step": ("lr: {type: float, low: 0.01, high: 0.1, step: 0}\n", "lr", "step"),
    "infinite step": (
        "batch_size: {type: int, low: 16, high: 64, step: .inf}\n",
        "batch_size",
        "step",
    ),
    "step with log": (
        "lr: {type: float, low: 0.01, high: 0.1, step: 0.01, log: true}\n",
        "lr",
        "step and log",
    ),
    "int field searched as float": (
        "batch_size: {type: float, low: 16, high: 64}\n",
        "batch_size",
        "cannot be searched as float",
    ),
    "string field searched as a range": (
        "optimizer: {type: int, low: 0, high: 2}\n",
        "optimizer",
        "cannot be searched",
    ),
    "non-positive fixed temperature": ("temperature: 0\n", "temperature", "positive"),
    "range reaching a zero temperature": (
        "temperature: {type: float, low: 0.0, high: 4.0}\n",
        "temperature",
        "positive",
    ),
    "zero batch size in the choices": (
        "batch_size: {type: categorical, choices: [0, 32]}\n",
        "batch_size",
        "at least 1",
    ),
}


@pytest.mark.parametrize("text, key, phrase", FILE_ERRORS.values(), ids=FILE_ERRORS.keys())
def test_file_error_names_the_file_and_the_key(tmp_path, text, key, phrase):
    path = write_space(tmp_path, text)

    message = space_error("ebkd", path)

    assert message.startswith(f"{path}: ")
    assert key in message
    assert phrase in message


def test_error_in_the_preset_names_the_preset():
    message = space_error("ebkd", fixed={"batch_size": 0})

    assert message.startswith("preset: ")
    assert "batch_size" in message


@pytest.mark.parametrize(
    "method, assignment, phrase",
    [
        ("ebkd", "lr", "expected KEY=VALUE"),
        ("ebkd", "=0.1", "expected KEY=VALUE"),
        ("student", "beta=0.5", "unknown parameter"),
        ("ebkd", "temperature=0", "positive"),
        ("ebkd", "temperature=-1.5", "positive"),
        ("ebkd", "optimizer=rmsprop", "not one of"),
        ("student", "branches=sig+foo", "not one of"),
        ("ebkd", "batch_size=2.5", "whole number"),
        ("ebkd", "lr=", "expected a number"),
    ],
)
def test_assignment_error_names_the_option_and_the_key(method, assignment, phrase):
    message = space_error(method, assignments=[assignment])

    assert message.startswith("--set ")
    assert assignment.partition("=")[0] in message
    assert phrase in message


def test_unknown_method_is_refused():
    assert "nosuch" in space_error("nosuch")


def test_space_json_is_canonical():
    space = load_space("ebkd")
    reordered = dict(reversed(list(space.items())))

    assert space_json(space) == space_json(reordered)
    assert space_json(space) != space_json(load_space("ebkd", assignments=["lr=0.01"]))


def test_describe_difference_of_equal_spaces_is_none():
    assert describe_difference(load_space("ebkd"), load_space("ebkd")) is None


def test_describe_difference_names_a_changed_parameter():
    old = load_space("ebkd")
    new = load_space("ebkd", assignments=["lr=0.01"])

    message = describe_difference(old, new)

    assert "'lr'" in message
    assert "changed" in message


def test_describe_difference_names_an_added_parameter():
    old = load_space("student")
    new = {**old, "extra": {"value": 1}}

    message = describe_difference(old, new)

    assert "'extra'" in message
    assert "new" in message


def test_describe_difference_names_a_removed_parameter():
    new = load_space("student")
    old = {**new, "extra": {"value": 1}}

    message = describe_difference(old, new)

    assert "'extra'" in message
    assert "gone" in message


SEARCHED_SPACE = """\
lr: {type: float, low: 0.01, high: 0.1, log: true}
weight_decay: {type: float, low: 0.0, high: 1.0e-3, step: 1.0e-4}
batch_size: {type: int, low: 16, high: 64, step: 16}
heads: {type: int, low: 1, high: 8, log: true}
optimizer: {type: categorical, choices: [sgd, adamw]}
temperature: {type: float, low: 1.0, high: 8.0}
beta: 0.3
"""


@pytest.fixture
def random_study():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))


def test_suggest_passes_fixed_values_through(random_study):
    space = load_space("ebkd", assignments=["lr=0.01", "optimizer=adamw"])
    trial = random_study.ask()

    params = suggest(trial, space)

    assert set(params) == set(space)
    assert params["lr"] == 0.01
    assert params["optimizer"] == "adamw"
    assert params["momentum"] == 0.9
    assert params["batch_size"] == 16
    assert params["heads"] == 4
    assert "lr" not in trial.distributions
    assert set(trial.distributions) == {
        "weight_decay",
        "lambda1",
        "lambda2",
        "lambda3",
        "temperature",
        "beta",
    }


def test_suggest_respects_each_distribution(tmp_path, random_study):
    space = load_space("ebkd", write_space(tmp_path, SEARCHED_SPACE))

    for _ in range(30):
        trial = random_study.ask()
        params = suggest(trial, space)
        distributions = trial.distributions

        assert 0.01 <= params["lr"] <= 0.1
        assert distributions["lr"] == FloatDistribution(0.01, 0.1, log=True)

        assert 0.0 <= params["weight_decay"] <= 1e-3
        assert math.isclose(params["weight_decay"] / 1e-4, round(params["weight_decay"] / 1e-4))
        assert distributions["weight_decay"] == FloatDistribution(0.0, 1e-3, step=1e-4)

        assert params["batch_size"] in (16, 32, 48, 64)
        assert distributions["batch_size"] == IntDistribution(16, 64, step=16)

        assert isinstance(params["heads"], int)
        assert 1 <= params["heads"] <= 8
        assert distributions["heads"] == IntDistribution(1, 8, log=True)

        assert params["optimizer"] in ("sgd", "adamw")
        assert distributions["optimizer"] == CategoricalDistribution(["sgd", "adamw"])

        assert 1.0 <= params["temperature"] <= 8.0
        assert not distributions["temperature"].log

        assert params["beta"] == 0.3
        assert "beta" not in distributions

        random_study.tell(trial, 0.0)


def test_suggested_params_make_a_valid_trial_config(random_study):
    from mmkd.config import TrialConfig

    space = load_space("ebkd")

    config = TrialConfig.from_params(suggest(random_study.ask(), space))

    assert 1.0 <= config.temperature <= 10.0
    assert config.heads == 4


def test_camkd_refuses_a_sig_only_student():
    with pytest.raises(SpaceError, match="camkd needs a student with the gaf branch"):
        load_space("camkd", assignments=["branches=sig"])


def test_camkd_refuses_a_choice_of_students_without_gaf(tmp_path):
    path = tmp_path / "camkd.yaml"
    path.write_text("branches: {type: categorical, choices: [sig+gaf, sig+pi]}\n")
    with pytest.raises(SpaceError, match="'sig\\+pi' has none"):
        load_space("camkd", path)


@pytest.mark.parametrize("method", ["ebkd", "pckd"])
def test_methods_with_a_fixed_student_do_not_take_branches(method):
    with pytest.raises(SpaceError, match="unknown parameter 'branches'"):
        load_space(method, assignments=["branches=sig"])


def test_image_branch_methods_accept_a_student_with_more_branches():
    space = load_space("camkd", assignments=["branches=sig+gaf+pi"])
    assert space["branches"] == {"value": "sig+gaf+pi"}


@pytest.mark.parametrize("step", ["", ", step: 0.25"])
def test_a_snapshot_range_is_refused_naming_its_values(tmp_path, step):
    path = write_space(tmp_path, f"snapshot: {{type: float, low: 0.25, high: 1.0{step}}}\n")

    message = space_error("eskd", path)

    assert message.startswith(f"{path}: snapshot: takes only the values 0.25, 0.5, 0.75, 1.0")
    assert "categorical" in message
