"""CAMKD, class-activation-map KD: the student's image branch looks where the image teachers do.

For window x of class y and each image modality k (GAF; PI too when the student has a PI
branch and the PI teacher takes part):

    M_k = normalise(ReLU(sum_c W_k[y, c] F_k[c]))                  teacher k's CAM
    m_k = normalise(resize(ReLU(sum_c V_k[y, c] G_k[c]), size(M_k)))   the student's CAM

with F_k, W_k the teacher's last feature map and classifier weights, G_k the student's map
of branch k and V_k the columns of its head that read that branch. ``normalise`` scales
each window's map to max 1; ``resize`` is bilinear.

loss = lambda1 * CE(z_s, y) + lambda2 * KD(z_s, mean_k z_k) + lambda3 * sum_k MSE(m_k, M_k)

The student pools its image branches into the head (no cross-attention), so V_k reads the
pooled G_k exactly as a CAM assumes.
"""

from __future__ import annotations

import torch.nn.functional as F

from mmkd.maps import class_activation_map, normalise_map, resize_map
from mmkd.methods.base import KDMethod

_IMAGE_MODALITIES = ("gaf", "pi")


class ClassActivationMapKD(KDMethod):
    """CAM matching between the student's image branches and the GAF (and PI) teachers."""

    fusion = "pool"

    def __init__(self, config, teachers, feature_dims):
        super().__init__(config, teachers, feature_dims)
        branches = config.branch_names
        if "gaf" not in branches:
            raise ValueError(f"camkd needs a student with a gaf branch, got {config.branches}")
        self.modalities = tuple(m for m in _IMAGE_MODALITIES if m in teachers and m in branches)

    def teacher_targets(self, outputs, labels):
        targets = super().teacher_targets(outputs, labels)
        for name in self.modalities:
            teacher = outputs[name]
            cam = class_activation_map(teacher.feature_map, teacher.classifier_weight, labels)
            targets[f"{name}_cam"] = normalise_map(cam)
        return targets

    def auxiliary(self, out, targets, labels, progress):
        total = out.logits.new_zeros(())
        for name in self.modalities:
            teacher_cam = targets[f"{name}_cam"]
            cam = class_activation_map(out.image_maps[name], out.image_head_weights[name], labels)
            cam = normalise_map(resize_map(cam, teacher_cam.shape[-1]))
            total = total + F.mse_loss(cam, teacher_cam)
        return total


METHOD = ClassActivationMapKD
