"""Search spaces: YAML files -> validated parameter definitions -> Optuna suggestions.

A space file maps a parameter name to either a fixed value or one distribution::

    lr: {type: float, low: 1.0e-3, high: 0.1, log: true}
    batch_size: {type: int, low: 16, high: 64, step: 16}
    optimizer: {type: categorical, choices: [sgd, adamw]}
    momentum: 0.9

The method's space is laid over the shared part (``shared.yaml``); preset values and
``--set key=value`` are laid over both as fixed values. Every mistake is reported as a
`SpaceError` naming the file and the key. This module imports neither torch nor optuna
at import time, so the command line can validate a space before any heavy import.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import fields
from importlib import resources
from pathlib import Path

import yaml

from mmkd.config import AVER_MODES, OPTIMIZERS, SCHEDULES, SNAPSHOTS, TrialConfig
from mmkd.methods import METHODS

SHARED_KEYS = (
    "optimizer",
    "lr",
    "momentum",
    "weight_decay",
    "schedule",
    "batch_size",
    "grad_clip",
)
ENTRY_KEYS = {"type", "low", "high", "log", "step", "choices"}
# Parameters with a few valid values, not a range: searched as categorical or fixed.
DISCRETE_ONLY = {"snapshot": ", ".join(map(str, SNAPSHOTS))}
BRANCH_SETS = ("sig", "sig+gaf", "sig+pi", "sig+gaf+pi")

_FIELD_TYPES = {f.name: f.type for f in fields(TrialConfig)}
_ALLOWED_STRINGS = {
    "optimizer": OPTIMIZERS,
    "schedule": SCHEDULES,
    "branches": BRANCH_SETS,
    "aver_mode": AVER_MODES,
}


class SpaceError(ValueError):
    """A space that cannot be used; the message names the file and the key."""


class _Loader(yaml.SafeLoader):
    """YAML as PyYAML reads it, except that ``1e-3`` is a number, not the string '1e-3'."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def space_dir() -> Path:
    return Path(str(resources.files("spaces")))


def allowed_keys(method: str) -> tuple[str, ...]:
    return SHARED_KEYS + METHODS[method].knobs


def _read_yaml(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SpaceError(f"{path}: cannot read the space file ({error.strerror})") from None
    except UnicodeDecodeError:
        raise SpaceError(f"{path}: not a text file (UTF-8 expected)") from None
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.constructor.ConstructorError as error:
        # The safe loader meets a tag such as !!python/object: refused, never run.
        mark = error.problem_mark
        where = f" at line {mark.line + 1}" if mark else ""
        raise SpaceError(
            f"{path}: a YAML tag that is not plain data{where}: {error.problem}"
        ) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise SpaceError(f"{path}: not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SpaceError(f"{path}: a space must be a mapping of parameter names to entries")
    return data


# Training runs in float32 (largest value 3.4e38), and a temperature is squared in the loss:
# beyond this magnitude a value makes no sense and would fail its trials instead of
# training them.
MAX_MAGNITUDE = 1e30


def _check_value(source: str, key: str, value):
    """Coerce a fixed value or a choice to the config field's type, or raise."""
    kind = _FIELD_TYPES[key]
    if kind == "str":
        allowed = _ALLOWED_STRINGS.get(key)
        if not isinstance(value, str) or (allowed and value not in allowed):
            options = ", ".join(allowed) if allowed else "a string"
            raise SpaceError(f"{source}: {key}: {value!r} is not one of {options}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpaceError(f"{source}: {key}: expected a number, got {value!r}")
    if not math.isfinite(value):
        raise SpaceError(f"{source}: {key}: {value!r} is not a finite number")
    if abs(value) > MAX_MAGNITUDE:
        raise SpaceError(f"{source}: {key}: {value!r} is beyond {MAX_MAGNITUDE:g} in size")
    if kind == "int":
        if float(value) != int(value):
            raise SpaceError(f"{source}: {key}: expected a whole number, got {value!r}")
        value = int(value)
    else:
        value = float(value)
    _check_field(source, key, value)
    return value


def _check_field(source: str, key: str, value) -> None:
    """Raise if the config itself refuses ``value`` for ``key`` (e.g. a temperature of 0)."""
    try:
        TrialConfig(**{key: value})
    except ValueError as error:
        raise SpaceError(f"{source}: {error}") from None


def _check_entry(source: str, key: str, entry) -> dict:
    """One validated entry: {"value": v} for a fixed value, else a distribution."""
    if not isinstance(entry, dict):
        return {"value": _check_value(source, key, entry)}

    unknown = set(entry) - ENTRY_KEYS
    if unknown:
        raise SpaceError(
            f"{source}: {key}: unknown field(s) {', '.join(sorted(unknown))}; "
            f"use {', '.join(sorted(ENTRY_KEYS))}"
        )
    kind = entry.get("type")
    if kind == "categorical":
        choices = entry.get("choices")
        if not isinstance(choices, list) or not choices:
            raise SpaceError(f"{source}: {key}: categorical needs a non-empty list of choices")
        checked = [_check_value(source, key, choice) for choice in choices]
        if len(set(map(repr, checked))) != len(checked):
            raise SpaceError(f"{source}: {key}: choices repeat a value")
        return {"type": "categorical", "choices": checked}
    if kind not in ("float", "int"):
        raise SpaceError(f"{source}: {key}: type must be float, int or categorical, got {kind!r}")
    if key in DISCRETE_ONLY:
        raise SpaceError(
            f"{source}: {key}: takes only the values {DISCRETE_ONLY[key]}; search it as "
            "categorical with some of them as choices"
        )
    if _FIELD_TYPES[key] == "str" or (kind == "float" and _FIELD_TYPES[key] == "int"):
        raise SpaceError(f"{source}: {key}: cannot be searched as {kind}")
    for bound in ("low", "high"):
        if bound not in entry:
            raise SpaceError(f"{source}: {key}: {kind} needs '{bound}'")
        value = entry[bound]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpaceError(f"{source}: {key}: {bound} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise SpaceError(f"{source}: {key}: {bound} must be a finite number, got {value!r}")
        if abs(value) > MAX_MAGNITUDE:
            raise SpaceError(
                f"{source}: {key}: {bound} {value!r} is beyond {MAX_MAGNITUDE:g} in size"
            )
        if kind == "int" and float(value) != int(value):
            raise SpaceError(f"{source}: {key}: {bound} must be a whole number for type int")
    low, high = entry["low"], entry["high"]
    if low > high:
        raise SpaceError(f"{source}: {key}: low ({low}) is greater than high ({high})")
    log = entry.get("log", False)
    if not isinstance(log, bool):
        raise SpaceError(f"{source}: {key}: log must be true or false")
    if log and low <= 0:
        raise SpaceError(f"{source}: {key}: a log range needs low > 0, got {low}")
    step = entry.get("step")
    if step is not None:
        if isinstance(step, bool) or not isinstance(step, (int, float)) or not 0 < step < math.inf:
            raise SpaceError(f"{source}: {key}: step must be a positive finite number")
        if kind == "int" and float(step) != int(step):
            raise SpaceError(f"{source}: {key}: step must be a whole number for type int")
        if log:
            raise SpaceError(f"{source}: {key}: step and log cannot be used together")
    cast = int if kind == "int" else float

    # The config's own limits are monotone (temperature > 0, batch_size >= 1), so a range
    # whose ends pass them cannot suggest a value it refuses.
    _check_field(source, key, cast(low))
    _check_field(source, key, cast(high))
    checked = {"type": kind, "low": cast(low), "high": cast(high), "log": log}
    if step is not None:
        checked["step"] = cast(step)
    return checked


def _check_part(source: str, data: dict, method: str) -> dict:
    allowed = allowed_keys(method)
    checked = {}
    for key, entry in data.items():
        if key not in allowed:
            raise SpaceError(
                f"{source}: unknown parameter {key!r} for method {method} "
                f"(known: {', '.join(allowed)})"
            )
        checked[key] = _check_entry(source, key, entry)
    return checked


def parse_assignment(text: str) -> tuple[str, object]:
    """``key=value`` from the command line; the value is read as YAML (numbers, strings)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise SpaceError(f"--set {text!r}: expected KEY=VALUE")
    try:
        value = yaml.load(raw, Loader=_Loader)
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def load_space(
    method: str,
    space_file: str | Path | None = None,
    fixed: dict | None = None,
    assignments: list[str] = (),
) -> dict:
    """The validated space of a search, as a plain dict that can be stored and compared.

    Layers, later ones winning: the shared part, the method's file (or ``space_file``),
    the preset's ``fixed`` values, then ``assignments`` (``key=value`` strings). The
    student's branch set is fixed to the method's own unless a layer sets it.
    """
    if method not in METHODS:
        raise SpaceError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    shared_path = space_dir() / "shared.yaml"
    method_path = Path(space_file) if space_file else space_dir() / f"{method}.yaml"

    space = _check_part(str(shared_path), _read_yaml(shared_path), method)
    space.update(_check_part(str(method_path), _read_yaml(method_path), method))
    space.update(_check_part("preset", fixed or {}, method))
    for text in assignments:
        key, value = parse_assignment(text)
        space.update(_check_part(f"--set {text}", {key: value}, method))

    space.setdefault("branches", {"value": METHODS[method].branches})
    _check_branches(method, space["branches"])
    _check_config(space)
    return space


def _check_branches(method: str, entry: dict) -> None:
    """Every student the space can choose must have the branches the method reads."""
    needed = METHODS[method].branches.split("+")
    for option in [entry["value"]] if "value" in entry else entry["choices"]:
        missing = [name for name in needed if name not in option.split("+")]
        if missing:
            raise SpaceError(
                f"branches: method {method} needs a student with the {'+'.join(missing)} "
                f"branch; {option!r} has none"
            )


def _check_config(space: dict) -> None:
    """The fixed values together must make a valid config; each alone was checked already."""
    values = {key: entry["value"] for key, entry in space.items() if "value" in entry}
    try:
        TrialConfig.from_params(values)
    except ValueError as error:
        raise SpaceError(f"space: {error}") from None


def searched(space: dict) -> dict:
    """Only the entries that are searched (distributions)."""
    return {key: entry for key, entry in space.items() if "value" not in entry}


def space_json(space: dict) -> str:
    """Canonical text of a space, for storing with a study and comparing on resume."""
    return json.dumps(space, sort_keys=True)


def describe_difference(old: dict, new: dict) -> str | None:
    """The first parameter whose entry differs between two spaces, in words; None if equal."""
    for key in sorted(set(old) | set(new)):
        if key not in new:
            return f"parameter {key!r} was in the space and is gone"
        if key not in old:
            return f"parameter {key!r} is new"
        if old[key] != new[key]:
            return f"parameter {key!r} changed from {old[key]} to {new[key]}"
    return None


def suggest(trial, space: dict) -> dict:
    """Ask an Optuna trial for every searched entry; fixed entries pass through."""
    params = {}
    for key, entry in space.items():
        if "value" in entry:
            params[key] = entry["value"]
        elif entry["type"] == "categorical":
            params[key] = trial.suggest_categorical(key, entry["choices"])
        elif entry["type"] == "int":
            params[key] = trial.suggest_int(
                key, entry["low"], entry["high"], step=entry.get("step", 1), log=entry["log"]
            )
        else:
            params[key] = trial.suggest_float(
                key, entry["low"], entry["high"], step=entry.get("step"), log=entry["log"]
            )
    return params
