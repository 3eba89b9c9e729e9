"""AVER, ESKD, entropy-based KD and CA-MKD against hand computations, and their gradients."""

import math

import pytest
import torch

from mmkd.config import TrialConfig
from mmkd.methods import build_method
from mmkd.methods.camkd_conf import confidence_weights
from mmkd.methods.ebkd_entropy import entropy_weights
from mmkd.nets import Student, StudentOutput
from mmkd.teachers import TeacherOutputs

LN3 = math.log(3.0)


def _teacher(logits, features=None):
    logits = torch.tensor(logits)
    features = torch.zeros(len(logits), 1) if features is None else torch.tensor(features)
    return TeacherOutputs(
        logits=logits,
        features=features,
        feature_map=features.unsqueeze(2),
        classifier_weight=torch.zeros(logits.shape[1], features.shape[1]),
    )


def _student_output(logits, features):
    logits = torch.tensor(logits)
    return StudentOutput(
        logits=logits,
        sig_map=torch.zeros(len(logits), 1, 4),
        image_maps={},
        features={"sig": torch.tensor(features)},
        attention=None,
    )


def _loss(name, config, outputs, student_logits, labels, feature_dims=None, features=None):
    teachers = tuple(outputs)
    method = build_method(name, config, teachers, feature_dims)
    labels = torch.tensor(labels)
    targets = method.teacher_targets(outputs, labels)
    out = _student_output(student_logits, features or [[0.0]] * len(student_logits))
    return method(out, targets, labels, progress=0.0)


@pytest.mark.parametrize("name", ["aver", "eskd"])
def test_average_logits_loss_matches_hand_computation(name):
    # Mean teacher logits [2 ln 3, 0]; at T = 2 they are [ln 3, 0] -> softmax [3/4, 1/4].
    outputs = {
        "sig": _teacher([[3 * LN3, 0.0]]),
        "gaf": _teacher([[2 * LN3, 1.0]]),
        "pi": _teacher([[LN3, -1.0]]),
    }
    config = TrialConfig(lambda1=0.5, lambda2=2.0, temperature=2.0)

    loss, parts = _loss(name, config, outputs, [[math.log(2.0), 0.0]], [0])

    # Student [ln 2, 0]: CE for class 0 = -ln(2/3); at T = 2, q = [sqrt 2, 1] / (sqrt 2 + 1).
    ce = math.log(1.5)
    q0 = math.sqrt(2.0) / (math.sqrt(2.0) + 1.0)
    kd = 4.0 * (0.75 * math.log(0.75 / q0) + 0.25 * math.log(0.25 / (1.0 - q0)))
    assert parts["ce"] == pytest.approx(ce, rel=1e-5)
    assert parts["kd"] == pytest.approx(kd, rel=1e-5)
    assert loss.item() == pytest.approx(0.5 * ce + 2.0 * kd, rel=1e-5)


@pytest.mark.parametrize("name", ["aver", "eskd"])
def test_mean_of_kd_terms_differs_from_kd_of_mean_logits(name):
    # Window 1: teachers disagree, [ln 3, 0] and [-ln 3, 0] -> softmax [3/4, 1/4] and
    # [1/4, 3/4]; their mean logits [0, 0] give [1/2, 1/2], the student's own prediction.
    # Window 2: both teachers say [ln 3, 0].
    outputs = {
        "sig": _teacher([[LN3, 0.0], [LN3, 0.0]]),
        "gaf": _teacher([[-LN3, 0.0], [LN3, 0.0]]),
    }
    student = [[0.0, 0.0], [0.0, 0.0]]

    _, by_logits = _loss(name, TrialConfig(temperature=1.0), outputs, student, [0, 1])
    config = TrialConfig(temperature=1.0, aver_mode="kd")
    _, by_kd = _loss(name, config, outputs, student, [0, 1])

    # KL([3/4, 1/4] || [1/2, 1/2]) = KL([1/4, 3/4] || [1/2, 1/2]).
    kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert by_logits["kd"] == pytest.approx((0.0 + kl) / 2, rel=1e-5)
    assert by_kd["kd"] == pytest.approx((kl + kl) / 2, rel=1e-5)
    assert by_kd["kd"] > by_logits["kd"] + 0.05


def test_aver_modes_agree_with_one_teacher():
    outputs = {"sig": _teacher([[LN3, 0.0]])}
    student = [[0.0, 1.0]]

    _, by_logits = _loss("aver", TrialConfig(), outputs, student, [0])
    _, by_kd = _loss("aver", TrialConfig(aver_mode="kd"), outputs, student, [0])

    assert by_kd["kd"] == pytest.approx(by_logits["kd"], rel=1e-6)


def _entropy(probabilities):
    return -sum(p * math.log(p) for p in probabilities)


def test_entropy_kd_loss_matches_hand_computation():
    # Sig teacher [2 ln 3, 0]: at T = 1 softmax [9/10, 1/10] (the entropy's), at T = 2
    # [3/4, 1/4] (the KD target's). GAF teacher [0, 0]: [1/2, 1/2] at any temperature.
    outputs = {"sig": _teacher([[2 * LN3, 0.0]]), "gaf": _teacher([[0.0, 0.0]])}
    config = TrialConfig(lambda1=0.5, lambda2=2.0, temperature=2.0)

    loss, parts = _loss("ebkd-entropy", config, outputs, [[0.0, 2 * LN3]], [0])

    h_sig, h_gaf = _entropy([0.9, 0.1]), math.log(2.0)
    w_sig = 1.0 - h_sig / (h_sig + h_gaf)
    w_gaf = 1.0 - h_gaf / (h_sig + h_gaf)
    # Student [0, 2 ln 3]: CE for class 0 = ln 10; at T = 2, q = [1/4, 3/4].
    ce = math.log(10.0)
    kd_sig = 4.0 * (0.75 * math.log(0.75 / 0.25) + 0.25 * math.log(0.25 / 0.75))
    kd_gaf = 4.0 * (0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75))
    kd = w_sig * kd_sig + w_gaf * kd_gaf
    assert parts["ce"] == pytest.approx(ce, rel=1e-5)
    assert parts["kd"] == pytest.approx(kd, rel=1e-5)
    assert loss.item() == pytest.approx(0.5 * ce + 2.0 * kd, rel=1e-5)


def test_entropy_weights_sum_to_k_minus_one():
    # Three teachers, two windows; row 1 by hand, both rows summed.
    logits = torch.tensor(
        [
            [[2 * LN3, 0.0], [0.0, 0.0], [LN3, 0.0]],
            [[0.5, -1.0], [3.0, 2.0], [-2.0, 4.0]],
        ]
    )

    weights = entropy_weights(logits)

    entropies = [_entropy([0.9, 0.1]), math.log(2.0), _entropy([0.75, 0.25])]
    expected = [1.0 - h / sum(entropies) for h in entropies]
    assert weights[0].tolist() == pytest.approx(expected, rel=1e-6)
    assert weights.sum(dim=1).tolist() == pytest.approx([2.0, 2.0], rel=1e-6)


def test_entropy_weight_is_one_with_one_teacher():
    outputs = {"sig": _teacher([[2 * LN3, 0.0]])}
    config = TrialConfig(lambda1=0.0, lambda2=1.0, temperature=2.0)

    _, parts = _loss("ebkd-entropy", config, outputs, [[0.0, 0.0]], [0])

    assert entropy_weights(torch.tensor([[[2 * LN3, 0.0]]])).tolist() == [[1.0]]
    # Plain KD: target [3/4, 1/4], student [1/2, 1/2], times T^2 = 4.
    kd = 4.0 * (0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5))
    assert parts["kd"] == pytest.approx(kd, rel=1e-5)


def test_confidence_aware_loss_matches_hand_computation():
    # Class 0. Sig teacher [ln 3, 0]: p_y = 3/4, CE = ln(4/3); GAF teacher [0, 0]: CE = ln 2.
    # softmax over (ln(4/3), ln 2) = (4/3, 2) / (10/3) = (0.4, 0.6); K = 2 so w = (0.6, 0.4).
    outputs = {
        "sig": _teacher([[LN3, 0.0]], features=[[0.0, 2.0]]),
        "gaf": _teacher([[0.0, 0.0]], features=[[1.0]]),
    }
    config = TrialConfig(lambda1=0.5, lambda2=2.0, lambda3=3.0, temperature=1.0)
    feature_dims = {"student": 2, "sig": 2, "gaf": 1}
    method = build_method("camkd-conf", config, ("sig", "gaf"), feature_dims)
    with torch.no_grad():
        method.regressors["sig"].weight.copy_(torch.eye(2))
        method.regressors["sig"].bias.zero_()
        method.regressors["gaf"].weight.copy_(torch.tensor([[1.0, 1.0]]))
        method.regressors["gaf"].bias.zero_()
    labels = torch.tensor([0])
    targets = method.teacher_targets(outputs, labels)

    out = _student_output([[0.0, 0.0]], features=[[1.0, 2.0]])
    loss, parts = method(out, targets, labels, progress=0.0)

    ce = math.log(2.0)
    kd = 0.6 * (0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)) + 0.4 * 0.0
    # Regressed student features: sig [1, 2] vs [0, 2] -> MSE 1/2; gaf [3] vs [1] -> MSE 4.
    aux = 0.6 * 0.5 + 0.4 * 4.0
    assert targets["weights"].tolist() == [pytest.approx([0.6, 0.4], rel=1e-6)]
    assert parts["ce"] == pytest.approx(ce, rel=1e-5)
    assert parts["kd"] == pytest.approx(kd, rel=1e-5)
    assert parts["aux"] == pytest.approx(aux, rel=1e-5)
    assert loss.item() == pytest.approx(0.5 * ce + 2.0 * kd + 3.0 * aux, rel=1e-5)


def test_confidence_weights_sum_to_one():
    # Two teachers, window 2 of class 1: CE = (ln 4, ln 2) -> softmax (2/3, 1/3) -> w = (1/3, 2/3).
    two = confidence_weights(
        torch.tensor([[[LN3, 0.0], [0.0, 0.0]], [[LN3, 0.0], [0.0, 0.0]]]), torch.tensor([0, 1])
    )
    # Three teachers, class 0, p_y = (1/2, 1/4, 1/4): exp(CE) = (2, 4, 4) -> softmax
    # (0.2, 0.4, 0.4) -> w = (0.8, 0.6, 0.6) / 2.
    three = confidence_weights(
        torch.tensor([[[0.0, 0.0], [0.0, LN3], [-LN3, 0.0]]]), torch.tensor([0])
    )

    assert two.tolist() == [pytest.approx([0.6, 0.4]), pytest.approx([1 / 3, 2 / 3])]
    assert three.tolist() == [pytest.approx([0.4, 0.3, 0.3])]
    assert two.sum(dim=1).tolist() == pytest.approx([1.0, 1.0])
    assert three.sum(dim=1).tolist() == pytest.approx([1.0])


def test_confidence_weight_is_one_with_one_teacher():
    outputs = {"sig": _teacher([[LN3, 0.0]], features=[[1.0, 1.0]])}
    config = TrialConfig(lambda1=0.0, lambda2=1.0, lambda3=0.0, temperature=1.0)
    dims = {"student": 1, "sig": 2}

    _, parts = _loss("camkd-conf", config, outputs, [[0.0, 0.0]], [1], dims, [[0.0]])

    assert confidence_weights(torch.tensor([[[LN3, 0.0]]]), torch.tensor([1])).tolist() == [[1.0]]
    kd = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert parts["kd"] == pytest.approx(kd, rel=1e-5)


@pytest.mark.parametrize("name", ["ebkd-entropy", "camkd-conf"])
def test_weights_are_computed_without_gradient(name):
    logits = torch.tensor([[1.0, 0.0]], requires_grad=True)
    outputs = {
        "sig": TeacherOutputs(logits, torch.zeros(1, 2), torch.zeros(1, 2, 1), torch.zeros(2, 2)),
        "gaf": _teacher([[0.0, 1.0]], features=[[0.0, 0.0]]),
    }
    dims = {"student": 2, "sig": 2, "gaf": 2}
    method = build_method(name, TrialConfig(), ("sig", "gaf"), dims)

    targets = method.teacher_targets(outputs, torch.tensor([0]))

    assert not targets["weights"].requires_grad


def test_confidence_aware_kd_needs_feature_widths():
    with pytest.raises(ValueError, match="feature widths"):
        build_method("camkd-conf", TrialConfig(), ("sig", "gaf"), {"student": 64, "sig": 64})


@pytest.mark.parametrize("name", ["aver", "eskd", "ebkd-entropy", "camkd-conf"])
def test_loss_trains_every_student_and_method_parameter(name):
    torch.manual_seed(0)
    student = Student(in_channels=3, num_classes=3, branches=("sig",), depth=10, fusion="pool")
    widths = {"sig": 8, "gaf": 12, "pi": 16}
    outputs = {
        modality: TeacherOutputs(
            logits=torch.randn(4, 3),
            features=torch.rand(4, width),
            feature_map=torch.rand(4, width, 5),
            classifier_weight=torch.randn(3, width),
        )
        for modality, width in widths.items()
    }
    config = TrialConfig(lambda1=1.0, lambda2=1.0, lambda3=1.0, temperature=4.0)
    method = build_method(name, config, tuple(widths), {"student": student.feature_dim, **widths})
    labels = torch.tensor([0, 1, 2, 0])
    targets = method.teacher_targets(outputs, labels)

    loss, _ = method(student({"sig": torch.randn(4, 3, 40)}), targets, labels, 0.0)
    loss.backward()

    parameters = list(student.named_parameters()) + list(method.named_parameters())
    untrained = [n for n, p in parameters if p.grad is None or float(p.grad.abs().sum()) == 0]
    assert not untrained
    if name == "camkd-conf":
        assert {n.split(".")[1] for n, _ in method.named_parameters()} == set(widths)
