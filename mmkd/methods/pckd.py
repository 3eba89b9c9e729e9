"""PCKD, progressive cross-modal KD: feature matching that moves from one direction to another.

Pooled features, each L2-normalised; a composite target (a mean or a concatenation of
normalised teacher features) is normalised again, so every teacher has an equal say.
With match(u, v) = batch mean of ||u / |u| - v / |v|||^2 and the share of the epochs done
``progress``:

    stage 1, progress < p1:          w1 * match(P1 f_gaf, t_sig)
    stage 2, progress < p1 + p2:     w2 * match(P2 f_sig, mean(t_gaf, t_pi))
    stage 3, the rest:               w3 * match(P3 [f_sig, f_gaf], [t_sig, t_gaf, t_pi])

with p2 = r * (1 - p1), so that p1 + p2 < 1 holds for every searched p1 and r; f the
student's pooled features, t the normalised features of the teachers taking part (PI only
when it does), P1-P3 learned linear projections. CE and KD run throughout:

    loss = lambda1 * CE(z_s, y) + lambda2 * KD(z_s, mean_k z_k) + lambda3 * L_stage

w1-w3 are the per-stage weights of the feature term, so the space fixes lambda3 at 1. A PI
branch of the student feeds the head but takes no part in the stages.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmkd.maps import EPS
from mmkd.methods.base import KDMethod

_IMAGE_MODALITIES = ("gaf", "pi")


def stage(progress: float, p1: float, r: float) -> int:
    """The stage (1, 2 or 3) at ``progress``; stage 2 ends at p1 + r * (1 - p1)."""
    if progress < p1:
        return 1
    # Rounded so that a boundary meant as a decimal (0.2 + 0.5 * 0.8 = 0.6) is not one float
    # step late: an epoch's first batch has progress exactly k / epochs.
    if progress < round(p1 + r * (1.0 - p1), 12):
        return 2
    return 3


def _unit(features: torch.Tensor) -> torch.Tensor:
    return F.normalize(features, dim=1, eps=EPS)


def _match(projected: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Batch mean of the squared L2 distance between normalised ``projected`` and ``target``."""
    return (_unit(projected) - target).pow(2).sum(dim=1).mean()


class ProgressiveCrossModalKD(KDMethod):
    """Three-stage cross-modal feature KD between a Sig+GAF student and all its teachers."""

    fusion = "pool"

    def __init__(self, config, teachers, feature_dims):
        super().__init__(config, teachers, feature_dims)
        if "gaf" not in config.branch_names:
            raise ValueError(f"pckd needs a student with a gaf branch, got {config.branches}")
        self.image_teachers = tuple(m for m in _IMAGE_MODALITIES if m in teachers)
        image_dims = {feature_dims[m] for m in self.image_teachers}
        if len(image_dims) != 1:
            raise ValueError(
                "pckd averages the image teachers' features, so they need one width; got "
                + ", ".join(f"{m} {feature_dims[m]}" for m in self.image_teachers)
            )

        student_dim = feature_dims["student"]
        self.stage1 = nn.Linear(student_dim, feature_dims["sig"])
        self.stage2 = nn.Linear(student_dim, image_dims.pop())
        self.stage3 = nn.Linear(2 * student_dim, sum(feature_dims[m] for m in teachers))

    def teacher_targets(self, outputs, labels):
        targets = super().teacher_targets(outputs, labels)
        unit = {name: _unit(outputs[name].features) for name in self.teachers}
        targets["sig_features"] = unit["sig"]
        image = torch.stack([unit[m] for m in self.image_teachers]).mean(dim=0)
        targets["image_features"] = _unit(image)
        targets["joint_features"] = _unit(torch.cat([unit[m] for m in self.teachers], dim=1))
        return targets

    def auxiliary(self, out, targets, labels, progress):
        cfg = self.config
        current = stage(progress, cfg.p1, cfg.r)
        if current == 1:
            return cfg.w1 * _match(self.stage1(out.features["gaf"]), targets["sig_features"])
        if current == 2:
            return cfg.w2 * _match(self.stage2(out.features["sig"]), targets["image_features"])
        both = torch.cat([out.features["sig"], out.features["gaf"]], dim=1)
        return cfg.w3 * _match(self.stage3(both), targets["joint_features"])


METHOD = ProgressiveCrossModalKD
