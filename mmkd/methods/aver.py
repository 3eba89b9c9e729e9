"""AVER, KD from the average of several teachers: the usual multi-teacher baseline.

With K teachers, logits z_k and the student's z_s, ``aver_mode`` chooses the target:

    "logits" (default):  L_kd = KD(z_s, (1/K) sum_k z_k)
    "kd":                L_kd = (1/K) sum_k KD(z_s, z_k)       (the CA-MKD reference code)

KD(s, t) = T^2 * KL(softmax(t / T) || softmax(s / T)), batch mean. The two modes are not
equal: softmax and KL are not linear in the teacher's logits, so the KL to the average
logits is not the average of the KLs (with two teachers that disagree the first can be 0
while the second is not). With one teacher they coincide. No auxiliary term.

loss = lambda1 * CE(z_s, y) + lambda2 * L_kd
"""

from __future__ import annotations

import torch

from mmkd.methods.base import KDMethod, weighted_kd


class AverageKD(KDMethod):
    """KD from the average of the teachers' logits, or the average of per-teacher KD terms."""

    def teacher_targets(self, outputs, labels):
        targets = super().teacher_targets(outputs, labels)
        targets["teacher_logits"] = torch.stack(
            [outputs[name].logits for name in self.teachers], dim=1
        )
        return targets

    def distillation(self, out, targets):
        if self.config.aver_mode == "logits":
            return super().distillation(out, targets)
        teacher_logits = targets["teacher_logits"]
        weights = teacher_logits.new_full(teacher_logits.shape[:2], 1.0 / teacher_logits.shape[1])
        return weighted_kd(out.logits, teacher_logits, weights, self.config.temperature)


METHOD = AverageKD
