"""The interface every KD method implements, and the loss terms methods share."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmkd.config import TrialConfig
from mmkd.nets import StudentOutput
from mmkd.teachers import TeacherOutputs


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float):
    """Hinton's soft-target loss: T^2 * KL(softmax(t / T) || softmax(s / T)), batch mean."""
    log_student = F.log_softmax(student_logits / temperature, dim=1)
    teacher = F.softmax(teacher_logits / temperature, dim=1)
    return F.kl_div(log_student, teacher, reduction="batchmean") * temperature**2


def weighted_kd(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    weights: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """Batch mean of sum_k w_k * KD_k over K teachers, each window with its own weights.

    Shapes: student (B, C), teachers (B, K, C), weights (B, K).
    KD_k = T^2 * sum_c p_kc (log p_kc - log q_c), p_k = softmax(z_k / T), q = softmax(z_s / T).
    """
    log_student = F.log_softmax(student_logits / temperature, dim=1).unsqueeze(1)
    log_teacher = F.log_softmax(teacher_logits / temperature, dim=2)
    per_teacher = temperature**2 * (log_teacher.exp() * (log_teacher - log_student)).sum(dim=2)
    return (weights * per_teacher).sum(dim=1).mean()


class KDMethod(nn.Module):
    """A KD method: loss = lambda1 * CE(z_s, y) + lambda2 * L_kd + lambda3 * L_aux.

    A method sees the frozen teachers only through `TeacherOutputs` computed once before
    training (teachers see no augmentation, so their outputs do not change between
    epochs). `teacher_targets` turns those into per-window tensors without gradient; the
    training loop indexes them with each batch and passes them to `forward`. Modules a
    method learns (regressors, projections) are its own submodules and are trained with
    the student.
    """

    uses_teachers = True
    # How the student's head reads its image branch: "pool" or "attention" (cross-attention)
    fusion = "pool"

    def __init__(
        self, config: TrialConfig, teachers: tuple[str, ...], feature_dims: dict[str, int]
    ):
        super().__init__()
        self.config = config
        self.teachers = teachers
        self.feature_dims = feature_dims

    def teacher_targets(
        self, outputs: dict[str, TeacherOutputs], labels: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Per-window targets; by default the mean of the taking-part teachers' logits."""
        logits = torch.stack([outputs[name].logits for name in self.teachers])
        return {"logits": logits.mean(dim=0)}

    def distillation(self, out: StudentOutput, targets: dict[str, torch.Tensor]) -> torch.Tensor:
        return kd_loss(out.logits, targets["logits"], self.config.temperature)

    def auxiliary(
        self,
        out: StudentOutput,
        targets: dict[str, torch.Tensor],
        labels: torch.Tensor,
        progress: float,
    ) -> torch.Tensor:
        """The method's own term; ``progress`` is the share of the epochs already done."""
        return out.logits.new_zeros(())

    def forward(self, out, targets, labels, progress: float):
        """Total loss and its parts (detached floats) for one batch."""
        cfg = self.config
        ce = F.cross_entropy(out.logits, labels)
        total = cfg.lambda1 * ce
        parts = {"ce": ce}
        if cfg.lambda2:
            parts["kd"] = self.distillation(out, targets)
            total = total + cfg.lambda2 * parts["kd"]
        if cfg.lambda3:
            parts["aux"] = self.auxiliary(out, targets, labels, progress)
            total = total + cfg.lambda3 * parts["aux"]
        return total, {name: float(value.detach()) for name, value in parts.items()}
