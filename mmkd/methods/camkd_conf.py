"""CA-MKD, Confidence-Aware Multi-teacher KD (Zhang, Chen, Wang; ICASSP 2022).

A teacher that predicts a window's label well counts more for that window, on logits and on
features.

Per window, with CE_k = CE(z_k, y) the cross-entropy of teacher k on the true label:

    w_k   = (1 - softmax_k(CE_1, ..., CE_K)) / (K - 1)            (the K weights sum to 1)
    L_kd  = batch mean of sum_k w_k * KD_k,   KD_k = T^2 * KL(softmax(z_k / T) || softmax(z_s / T))
    L_aux = batch mean of sum_k w_k * mean_i (regressor_k(h_s) - h_k)_i^2

h_s is the student's pooled Sig features, h_k teacher k's pooled features and regressor_k
a learned linear map from the student's width to teacher k's, trained with the student.
Features are not normalised, so lambda3 carries their scale.

loss = lambda1 * CE(z_s, y) + lambda2 * L_kd + lambda3 * L_aux

With one teacher the formula divides by 0; its weight is 1 instead (plain KD and a plain
feature hint). The weights are fixed per window before training, without gradient.
"""

from __future__ import annotations

import torch
from torch import nn

from mmkd.methods.base import KDMethod, weighted_kd


def confidence_weights(teacher_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Teacher weights per window from their cross-entropies: (N, K, C), (N,) -> (N, K)."""
    count = teacher_logits.shape[1]
    if count == 1:
        return teacher_logits.new_ones(teacher_logits.shape[:2])
    log_p = torch.log_softmax(teacher_logits, dim=2)
    index = labels.view(-1, 1, 1).expand(-1, count, 1)
    cross_entropy = -log_p.gather(2, index).squeeze(2)
    return (1.0 - torch.softmax(cross_entropy, dim=1)) / (count - 1)


class ConfidenceAwareKD(KDMethod):
    """Multi-teacher KD weighted per window by each teacher's cross-entropy on the label."""

    def __init__(self, config, teachers, feature_dims):
        super().__init__(config, teachers, feature_dims)
        missing = [name for name in ("student", *teachers) if name not in feature_dims]
        if missing:
            raise ValueError(
                f"camkd-conf needs the feature widths of {', '.join(missing)} to build its "
                "regressors"
            )
        self.regressors = nn.ModuleDict(
            {name: nn.Linear(feature_dims["student"], feature_dims[name]) for name in teachers}
        )

    @torch.no_grad()
    def teacher_targets(self, outputs, labels):
        logits = torch.stack([outputs[name].logits for name in self.teachers], dim=1)
        targets = {"teacher_logits": logits, "weights": confidence_weights(logits, labels)}
        for name in self.teachers:
            targets[f"{name}_features"] = outputs[name].features
        return targets

    def distillation(self, out, targets):
        return weighted_kd(
            out.logits, targets["teacher_logits"], targets["weights"], self.config.temperature
        )

    def auxiliary(self, out, targets, labels, progress):
        student = out.features["sig"]
        errors = [
            (self.regressors[name](student) - targets[f"{name}_features"]).pow(2).mean(dim=1)
            for name in self.teachers
        ]
        return (targets["weights"] * torch.stack(errors, dim=1)).sum(dim=1).mean()


METHOD = ConfidenceAwareKD
