"""Entropy-based multi-teacher KD (Kwon et al., ICASSP 2020): unsure teachers count less.

A teacher's weight for a window falls with the entropy of its prediction on that window.

Per window and teacher k, with H_k the entropy of softmax(z_k) at temperature 1 (the
teacher's own prediction, whatever the distillation temperature T):

    w_k  = 1 - H_k / (sum_j H_j + 1e-8)            (the K weights sum to K - 1)
    L_kd = batch mean of sum_k w_k * KD_k,   KD_k = T^2 * KL(softmax(z_k / T) || softmax(z_s / T))

loss = lambda1 * CE(z_s, y) + lambda2 * L_kd

With one teacher the formula would give w = 0; its weight is 1 instead (plain KD). When
every teacher is certain (all H_k = 0) every weight is 1. The weights are fixed per window
before training, without gradient.
"""

from __future__ import annotations

import torch

from mmkd.methods.base import KDMethod, weighted_kd

EPSILON = 1e-8


def entropy_weights(teacher_logits: torch.Tensor) -> torch.Tensor:
    """Teacher weights per window from their prediction entropies: (N, K, C) -> (N, K)."""
    if teacher_logits.shape[1] == 1:
        return teacher_logits.new_ones(teacher_logits.shape[:2])
    log_p = torch.log_softmax(teacher_logits, dim=2)
    entropy = -(log_p.exp() * log_p).sum(dim=2)
    return 1.0 - entropy / (entropy.sum(dim=1, keepdim=True) + EPSILON)


class EntropyKD(KDMethod):
    """KD from several teachers, each weighted per window by its prediction entropy."""

    @torch.no_grad()
    def teacher_targets(self, outputs, labels):
        logits = torch.stack([outputs[name].logits for name in self.teachers], dim=1)
        return {"teacher_logits": logits, "weights": entropy_weights(logits)}

    def distillation(self, out, targets):
        return weighted_kd(
            out.logits, targets["teacher_logits"], targets["weights"], self.config.temperature
        )


METHOD = EntropyKD
