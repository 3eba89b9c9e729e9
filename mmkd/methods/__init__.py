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


KD = ("lambda1", "lambda2", "temperature")

METHODS: dict[str, MethodInfo] = {
    "student": MethodInfo(
        name="student",
        title="no distillation: the student trained on labels alone (reference row)",
        module="mmkd.methods.student",
        branches="sig",
        teachers=(),
        knobs=("branches",),
    ),
    "aver": MethodInfo(
        name="aver",
        title="AVER: KD towards the average of the teachers' logits",
        module="mmkd.methods.aver",
        branches="sig",
        teachers=(),
        knobs=(*KD, "aver_mode"),
    ),
    "eskd": MethodInfo(
        name="eskd",
        title="early-stopped KD (Cho & Hariharan, ICCV 2019): AVER from early teacher snapshots",
        module="mmkd.methods.eskd",
        branches="sig",
        teachers=(),
        knobs=(*KD, "aver_mode", "snapshot"),
    ),
    "camkd": MethodInfo(
        name="camkd",
        title=(
            "class-activation-map KD: the student's image-branch CAM matches the GAF "
            "(and PI) teacher's CAM"
        ),
        module="mmkd.methods.camkd",
        branches="sig+gaf",
        teachers=("gaf",),
        knobs=(*KD, "lambda3", "branches"),
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
        knobs=(*KD, "lambda3", "beta", "heads"),
    ),
    "featkd": MethodInfo(
        name="featkd",
        title="hidden-feature KD: a regressor maps the student's features to the Sig teacher's",
        module="mmkd.methods.featkd",
        branches="sig",
        teachers=("sig",),
        knobs=(*KD, "lambda3"),
    ),
    "pckd": MethodInfo(
        name="pckd",
        title=(
            "progressive cross-modal KD: Sig->image, image->Sig, then shared-representation "
            "feature stages on a searched schedule"
        ),
        module="mmkd.methods.pckd",
        branches="sig+gaf",
        teachers=("sig", "gaf"),
        knobs=(*KD, "lambda3", "p1", "r", "w1", "w2", "w3"),
    ),
    "camkd-conf": MethodInfo(
        name="camkd-conf",
        title=(
            "Confidence-Aware Multi-teacher KD (Zhang, Chen, Wang; ICASSP 2022): teachers "
            "weighted per window by their cross-entropy, on logits and features"
        ),
        module="mmkd.methods.camkd_conf",
        branches="sig",
        teachers=(),
        knobs=(*KD, "lambda3"),
    ),
    "ebkd-entropy": MethodInfo(
        name="ebkd-entropy",
        title=(
            "Entropy-Based KD (Kwon et al., ICASSP 2020): teachers weighted per window by "
            "1 - H_k / sum_j H_j of their prediction entropies"
        ),
        module="mmkd.methods.ebkd_entropy",
        branches="sig",
        teachers=(),
        knobs=KD,
    ),
}


def build_method(
    name: str, config, teachers: tuple[str, ...], feature_dims: dict[str, int] | None = None
):
    """Instantiate method ``name`` for a trial's config and the teachers taking part.

    ``feature_dims`` gives the channel count of the student's features (key "student")
    and of each teacher's, for methods that learn regressors or projections between them.
    """
    info = METHODS[name]
    missing = [t for t in info.teachers if t not in teachers]
    if missing:
        raise ValueError(f"method {name} needs the {', '.join(missing)} teacher(s)")
    return method_class(name)(config, teachers, feature_dims or {})


def method_class(name: str):
    """The class implementing method ``name`` (imports its module, and so torch)."""
    if name not in METHODS:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(METHODS)}")
    return importlib.import_module(METHODS[name].module).METHOD
