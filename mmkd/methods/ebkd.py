"""EBKD, evidence-based KD: the student's Sig-to-GAF cross-attention learns where to look.

Teacher evidence over time, per window of class y:

    a   = normalise(resize(sum_c A_sig[c, t]^2, Hs))                Sig teacher's attention
    m   = normalise(resize(collapse(ReLU(sum_c W_gaf[y, c] F_gaf[c])), Hs))   GAF teacher's CAM
    e   = normalise(beta * a + (1 - beta) * m)

Student evidence: the cross-attention weights (Sig tokens query GAF tokens) averaged over
heads and queries, a distribution over the Hs x Ws GAF tokens, collapsed to time like a GAF
map and normalised. ``normalise`` scales each window's profile to mean 1, so a and m are
on one scale before beta mixes them and lambda3 has a usable range (about 0.01-100).

loss = lambda1 * CE(z_s, y) + lambda2 * KD(z_s, mean_k z_k) + lambda3 * MSE(student, e)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmkd.maps import (
    attention_map_1d,
    class_activation_map,
    collapse_to_time,
    normalise_profile,
    resize_profile,
)
from mmkd.methods.base import KDMethod


def teacher_evidence(
    sig_attention: torch.Tensor, gaf_profile: torch.Tensor, beta: float, length: int
) -> torch.Tensor:
    """Mix the Sig teacher's attention and the GAF teacher's CAM profile into one profile."""
    sig_part = normalise_profile(resize_profile(sig_attention, length))
    gaf_part = normalise_profile(resize_profile(gaf_profile, length))
    return normalise_profile(beta * sig_part + (1.0 - beta) * gaf_part)


def student_evidence(attention: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Cross-attention weights (B, queries, Hs*Ws) -> normalised time profile (B, Hs)."""
    per_token = attention.mean(dim=1).reshape(attention.shape[0], *grid)
    return normalise_profile(collapse_to_time(per_token))


class EvidenceKD(KDMethod):
    """Evidence-based KD between the Sig and GAF teachers and a Sig+GAF student."""

    fusion = "attention"

    def teacher_targets(self, outputs, labels):
        targets = super().teacher_targets(outputs, labels)
        gaf = outputs["gaf"]
        cam = class_activation_map(gaf.feature_map, gaf.classifier_weight, labels)
        targets["sig_attention"] = attention_map_1d(outputs["sig"].feature_map)
        targets["gaf_profile"] = collapse_to_time(cam)
        return targets

    def auxiliary(self, out, targets, labels, progress):
        grid = tuple(out.image_maps["gaf"].shape[-2:])
        with torch.no_grad():
            evidence = teacher_evidence(
                targets["sig_attention"], targets["gaf_profile"], self.config.beta, grid[0]
            )
        return F.mse_loss(student_evidence(out.attention, grid), evidence)


METHOD = EvidenceKD
