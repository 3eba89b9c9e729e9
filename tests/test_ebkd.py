"""EBKD loss against a hand computation, and its gradient reaching both student branches."""

import math

import pytest
import torch

from mmkd.config import TrialConfig
from mmkd.methods import build_method
from mmkd.nets import Student, StudentOutput
from mmkd.teachers import TeacherOutputs


def _teacher(logits, feature_map, weight):
    logits = torch.tensor(logits)
    return TeacherOutputs(
        logits=logits,
        features=feature_map.flatten(2).mean(dim=2),
        feature_map=feature_map,
        classifier_weight=torch.tensor(weight),
    )


@pytest.fixture
def teacher_outputs():
    # Sig teacher: feature map (1 window, 2 channels, 4 steps); sum_c A^2 = [2, 1, 2, 4].
    sig_map = torch.tensor([[[1.0, 0.0, 1.0, 2.0], [1.0, 1.0, 1.0, 0.0]]])
    # GAF teacher: one channel, 2x2 map; class 0 weight 2 -> CAM = ReLU(2F) = [[2, 4], [6, 0]].
    gaf_map = torch.tensor([[[[1.0, 2.0], [3.0, -4.0]]]])
    return {
        "sig": _teacher([[4 * math.log(3.0), 0.0]], sig_map, [[1.0, 0.0], [0.0, 1.0]]),
        "gaf": _teacher([[0.0, 0.0]], gaf_map, [[2.0], [-1.0]]),
    }


def _student_output():
    # Attention of 2 queries over 4 GAF tokens (2x2 grid); the mean over queries is
    # [[0.3, 0.1], [0.4, 0.2]].
    attention = torch.tensor([[[0.4, 0.1, 0.3, 0.2], [0.2, 0.1, 0.5, 0.2]]])
    return StudentOutput(
        logits=torch.zeros(1, 2),
        sig_map=torch.zeros(1, 4, 2),
        image_maps={"gaf": torch.zeros(1, 4, 2, 2)},
        features={},
        attention=attention,
    )


def test_ebkd_loss_matches_hand_computation(teacher_outputs):
    config = TrialConfig(lambda1=0.5, lambda2=2.0, lambda3=3.0, temperature=2.0, beta=0.5)
    method = build_method("ebkd", config, ("sig", "gaf"))
    labels = torch.tensor([0])
    targets = method.teacher_targets(teacher_outputs, labels)

    loss, parts = method(_student_output(), targets, labels, progress=0.0)

    # CE of logits [0, 0] for class 0.
    ce = math.log(2.0)
    # Teacher mean logits [2 ln 3, 0] / T = [ln 3, 0] -> softmax [0.75, 0.25]; student [0.5, 0.5].
    kd = 4.0 * (0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5))
    # Sig attention [2, 1, 2, 4] resized to 2 -> [1.5, 3] -> mean 1 -> [2/3, 4/3].
    # GAF CAM [[2, 4], [6, 0]]: row means [3, 3], column means [4, 2] -> [3.5, 2.5]
    #   -> mean 1 -> [7/6, 5/6]. Mix with beta 0.5 -> [11/12, 13/12] (already mean 1).
    # Student: mean attention grid [[0.3, 0.1], [0.4, 0.2]]: row means [0.2, 0.3],
    #   column means [0.35, 0.15] -> [0.275, 0.225] -> mean 1 -> [1.1, 0.9].
    aux = ((1.1 - 11 / 12) ** 2 + (0.9 - 13 / 12) ** 2) / 2
    assert parts["ce"] == pytest.approx(ce, rel=1e-5)
    assert parts["kd"] == pytest.approx(kd, rel=1e-5)
    assert parts["aux"] == pytest.approx(aux, rel=1e-4)
    assert float(loss) == pytest.approx(0.5 * ce + 2.0 * kd + 3.0 * aux, rel=1e-5)


def test_beta_one_uses_only_the_sig_teacher(teacher_outputs):
    config = TrialConfig(lambda1=0.0, lambda2=0.0, lambda3=1.0, beta=1.0)
    method = build_method("ebkd", config, ("sig", "gaf"))
    labels = torch.tensor([0])
    targets = method.teacher_targets(teacher_outputs, labels)

    _, parts = method(_student_output(), targets, labels, progress=0.0)

    # Teacher evidence is the Sig attention alone: [2/3, 4/3]; student [1.1, 0.9].
    expected = ((1.1 - 2 / 3) ** 2 + (0.9 - 4 / 3) ** 2) / 2
    assert parts["aux"] == pytest.approx(expected, rel=1e-4)
    assert set(parts) == {"ce", "aux"}


def test_ebkd_needs_sig_and_gaf_teachers():
    with pytest.raises(ValueError, match="gaf"):
        build_method("ebkd", TrialConfig(), ("sig", "pi"))


def test_evidence_loss_trains_both_student_branches():
    torch.manual_seed(0)
    student = Student(
        in_channels=3, num_classes=2, branches=("sig", "gaf"), depth=10, image_depth=10
    )
    config = TrialConfig(lambda1=0.0, lambda2=0.0, lambda3=1.0, beta=0.3)
    method = build_method("ebkd", config, ("sig", "gaf"))
    inputs = {"sig": torch.randn(4, 3, 40), "gaf": torch.randn(4, 3, 16, 16)}
    labels = torch.tensor([0, 1, 0, 1])
    targets = {
        "logits": torch.randn(4, 2),
        "sig_attention": torch.rand(4, 10) + 0.1,
        "gaf_profile": torch.rand(4, 4) + 0.1,
    }

    loss, _ = method(student(inputs), targets, labels, progress=0.0)
    loss.backward()

    for branch in (student.sig_trunk, student.image_trunks["gaf"]):
        gradients = [p.grad for p in branch.parameters() if p.grad is not None]
        assert gradients, "no gradient reached the branch"
        assert sum(float(g.abs().sum()) for g in gradients) > 0
