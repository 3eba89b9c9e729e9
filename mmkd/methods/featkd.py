"""FeatKD, hidden-feature KD: a regressor maps the student's Sig features onto the Sig teacher's.

As in the knowledge-distillation work on time-series anomaly detection (2024), the student's
last Sig feature map S (d x Ts) is regressed onto the Sig teacher's last feature map A
(c x T'):

    loss = lambda1 * CE(z_s, y) + lambda2 * KD(z_s, mean_k z_k) + lambda3 * MSE(R(S), A)

R is a learned 1x1 convolution from d to c channels when d != c and the identity when the
widths agree (the student then matches the teacher's map directly); when Ts != T' the
regressed map is resized linearly to T'.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from mmkd.methods.base import KDMethod


class FeatureKD(KDMethod):
    """Hidden-feature KD from the Sig teacher's last feature map."""

    def __init__(self, config, teachers, feature_dims):
        super().__init__(config, teachers, feature_dims)
        student_dim, teacher_dim = feature_dims["student"], feature_dims["sig"]
        self.regressor = nn.Identity()
        if student_dim != teacher_dim:
            self.regressor = nn.Conv1d(student_dim, teacher_dim, kernel_size=1)

    def teacher_targets(self, outputs, labels):
        targets = super().teacher_targets(outputs, labels)
        targets["sig_map"] = outputs["sig"].feature_map
        return targets

    def auxiliary(self, out, targets, labels, progress):
        teacher_map = targets["sig_map"]
        regressed = self.regressor(out.sig_map)
        if regressed.shape[-1] != teacher_map.shape[-1]:
            regressed = F.interpolate(
                regressed, size=teacher_map.shape[-1], mode="linear", align_corners=False
            )
        return F.mse_loss(regressed, teacher_map)


METHOD = FeatureKD
