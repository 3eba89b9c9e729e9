"""KD methods: one short module each, listed in one plain registry.

The registry holds light metadata only (names, titles, what each method needs), so the
command line can list and check methods without importing torch. `build_method` imports
the method's module when a method is actually built.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class MethodInfo:
    """What a KD method is called and what it needs.

    ``branches`` is the student's default branch set; ``teachers`` the teachers it cannot
    do without; ``knobs`` the configuration keys of its own that its space may search.
    """

    name: str
    title: str
    module: str
    branches: str
    teachers: tuple[str, ...]
    knobs: tuple[str, ...]


METHODS: dict[str, MethodInfo] = {
    "student": MethodInfo(
        name="student",
        title="no distillation: the student trained on labels alone (reference row)",
        module="mmkd.methods.student",
        branches="sig",
        teachers=(),
        knobs=("branches",),
    ),
    "ebkd": MethodInfo(
        name="ebkd",
        title=(
            "evidence-based KD: the student's Sig-to-GAF cross-attention matches evidence "
            "mixed from the Sig teacher's temporal attention and the GAF teacher's CAM"
        ),
        module="mmkd.methods.ebkd",
        branches="sig+gaf",
        teachers=("sig", "gaf"),
        knobs=("lambda1", "lambda2", "lambda3", "temperature", "beta", "heads"),
    ),
}


def build_method(name: str, config, teachers: tuple[str, ...]):
    """Instantiate method ``name`` for a trial's config and the teachers taking part."""
    if name not in METHODS:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(METHODS)}")
    info = METHODS[name]
    missing = [t for t in info.teachers if t not in teachers]
    if missing:
        raise ValueError(f"method {name} needs the {', '.join(missing)} teacher(s)")
    module = importlib.import_module(info.module)
    return module.METHOD(config, teachers)
