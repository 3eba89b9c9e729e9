"""The student trained on labels alone: the reference row of every table.

loss = lambda1 * CE(z_s, y); no teacher is consulted, so lambda2 and lambda3 play no part.
"""

from __future__ import annotations

import torch.nn.functional as F

from mmkd.methods.base import KDMethod


class Student(KDMethod):
    """No distillation; the ``branches`` knob chooses the Sig-only or the Sig+GAF student."""

    uses_teachers = False

    def teacher_targets(self, outputs, labels):
        return {}

    def forward(self, out, targets, labels, progress: float):
        ce = F.cross_entropy(out.logits, labels)
        return self.config.lambda1 * ce, {"ce": float(ce.detach())}


METHOD = Student
