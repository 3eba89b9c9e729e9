"""CAMKD, FeatKD and PCKD losses against hand computations, and where their gradients go."""

import math

import pytest
import torch
from torch import nn

from mmkd.config import TrialConfig
from mmkd.methods import build_method
from mmkd.methods.pckd import stage
from mmkd.nets import Student, StudentOutput
from mmkd.teachers import TeacherOutputs

LN2 = math.log(2.0)


def _teacher(feature_map=None, weight=None, features=None, windows=1, classes=2):
    """Teacher outputs with zero logits (so KD towards them is easy to work out)."""
    if feature_map is None:
        feature_map = torch.zeros(windows, 2, 1)
    if features is None:
        features = feature_map.flatten(2).mean(dim=2)
    if weight is None:
        weight = torch.zeros(classes, feature_map.shape[1])
    return TeacherOutputs(
        logits=torch.zeros(len(feature_map), classes),
        features=torch.as_tensor(features, dtype=torch.float32),
        feature_map=feature_map,
        classifier_weight=torch.as_tensor(weight, dtype=torch.float32),
    )


def _output(windows=1, sig_map=None, image_maps=None, features=None, head_weights=None):
    return StudentOutput(
        logits=torch.zeros(windows, 2),
        sig_map=torch.zeros(windows, 2, 1) if sig_map is None else sig_map,
        image_maps=image_maps or {},
        features=features or {},
        attention=None,
        image_head_weights=head_weights or {},
    )


def _gradient_size(module: nn.Module) -> float:
    return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)


def _assert_every_parameter_trained(module: nn.Module) -> None:
    for name, parameter in module.named_parameters():
        assert parameter.grad is not None, name
        assert parameter.grad.abs().sum() > 0, name


SIG_INPUT = (4, 3, 40)
GAF_INPUT = (4, 3, 16, 16)
LABELS = torch.tensor([0, 1, 0, 1])


def _student(branches, fusion="pool"):
    torch.manual_seed(0)
    return Student(3, 2, branches=branches, depth=10, image_depth=10, fusion=fusion)


def _student_inputs():
    generator = torch.Generator().manual_seed(1)
    return {
        "sig": torch.randn(SIG_INPUT, generator=generator),
        "gaf": torch.randn(GAF_INPUT, generator=generator),
    }


# --- camkd ---------------------------------------------------------------------------------


def _camkd_student_gaf():
    # Channel 0 below, channel 1 all ones; the head's GAF columns for class 0 are [1, -1], so
    # the student's CAM is ReLU(G0 - 1) = [[2, 0, 0, 1], [0, 2, 1, 0], [0, 0, 4, 0], [0, 1, 0, 0]]
    # (the -1 entries of G0 - 1 are zeroed). Resized bilinearly to 2x2 (align_corners=False,
    # a factor of 2), each output is the mean of a 2x2 block: [[1, 0.5], [0.25, 1]], max 1.
    g0 = torch.tensor(
        [
            [3.0, 1.0, 0.0, 2.0],
            [1.0, 3.0, 2.0, 0.0],
            [0.0, 0.0, 5.0, 1.0],
            [0.0, 2.0, 1.0, 1.0],
        ]
    )
    image_map = torch.stack([g0, torch.ones(4, 4)])[None]
    head_weight = torch.tensor([[1.0, -1.0], [0.0, 0.0]])
    return image_map, head_weight


def _camkd_teacher_gaf():
    # One channel [[1, 2], [-3, 4]], class 0 weight 0.5: CAM = ReLU([[0.5, 1], [-1.5, 2]])
    # = [[0.5, 1], [0, 2]] -> max 1 -> [[0.25, 0.5], [0, 1]].
    return _teacher(torch.tensor([[[[1.0, 2.0], [-3.0, 4.0]]]]), [[0.5], [-1.0]])


# MSE of [[1, 0.5], [0.25, 1]] and [[0.25, 0.5], [0, 1]]: (0.75^2 + 0 + 0.25^2 + 0) / 4.
CAMKD_GAF_TERM = (0.5625 + 0.0625) / 4


def test_camkd_loss_zeroes_negative_cam_parts_and_resizes_to_the_teacher():
    config = TrialConfig(lambda1=0.5, lambda2=2.0, lambda3=3.0, branches="sig+gaf")
    method = build_method("camkd", config, ("gaf",))
    labels = torch.tensor([0])
    targets = method.teacher_targets({"gaf": _camkd_teacher_gaf()}, labels)
    image_map, head_weight = _camkd_student_gaf()
    out = _output(image_maps={"gaf": image_map}, head_weights={"gaf": head_weight})

    loss, parts = method(out, targets, labels, progress=0.0)

    # Zero student logits: CE = ln 2; teacher logits are zero too, so KD = 0.
    assert parts["ce"] == pytest.approx(LN2, rel=1e-6)
    assert parts["kd"] == pytest.approx(0.0, abs=1e-7)
    assert parts["aux"] == pytest.approx(CAMKD_GAF_TERM, rel=1e-5)
    assert float(loss) == pytest.approx(0.5 * LN2 + 3.0 * CAMKD_GAF_TERM, rel=1e-5)


def _camkd_pi_parts():
    # Student PI map, channel 0 [[0, 3], [1, 2]] read with weight [1, 0] for class 0:
    # CAM [[0, 3], [1, 2]] -> max 1 -> [[0, 1], [1/3, 2/3]] (same size as the teacher's).
    student_pi = torch.stack([torch.tensor([[0.0, 3.0], [1.0, 2.0]]), torch.ones(2, 2)])[None]
    student_weight = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    # Teacher PI map [[2, 2], [1, 0]] with weight 1: CAM the same -> [[1, 1], [0.5, 0]].
    teacher = _teacher(torch.tensor([[[[2.0, 2.0], [1.0, 0.0]]]]), [[1.0], [1.0]])
    return student_pi, student_weight, teacher


# MSE of [[0, 1], [1/3, 2/3]] and [[1, 1], [0.5, 0]]: (1 + 0 + 1/36 + 16/36) / 4 = 53/144.
CAMKD_PI_TERM = 53 / 144


@pytest.mark.parametrize(
    "teachers, expected",
    [(("gaf", "pi"), CAMKD_GAF_TERM + CAMKD_PI_TERM), (("gaf",), CAMKD_GAF_TERM)],
)
def test_camkd_adds_the_pi_term_only_when_the_pi_teacher_takes_part(teachers, expected):
    config = TrialConfig(lambda1=0.0, lambda2=0.0, lambda3=1.0, branches="sig+gaf+pi")
    method = build_method("camkd", config, teachers)
    labels = torch.tensor([0])
    student_pi, student_weight, pi_teacher = _camkd_pi_parts()
    outputs = {"gaf": _camkd_teacher_gaf(), "pi": pi_teacher}
    targets = method.teacher_targets({name: outputs[name] for name in teachers}, labels)
    image_map, head_weight = _camkd_student_gaf()
    out = _output(
        image_maps={"gaf": image_map, "pi": student_pi},
        head_weights={"gaf": head_weight, "pi": student_weight},
    )

    _, parts = method(out, targets, labels, progress=0.0)

    assert parts["aux"] == pytest.approx(expected, rel=1e-5)


def test_camkd_refuses_a_student_without_a_gaf_branch():
    with pytest.raises(ValueError, match="gaf branch"):
        build_method("camkd", TrialConfig(branches="sig"), ("gaf",))


def test_camkd_trains_the_image_branch_and_its_head_columns():
    config = TrialConfig(lambda1=0.0, lambda2=0.0, lambda3=1.0, branches="sig+gaf")
    method = build_method("camkd", config, ("sig", "gaf"))
    student = _student(("sig", "gaf"), fusion=method.fusion)
    generator = torch.Generator().manual_seed(2)
    gaf_teacher = _teacher(
        torch.rand(4, 16, 8, 8, generator=generator), torch.rand(2, 16, generator=generator)
    )
    sig_teacher = _teacher(torch.rand(4, 32, 10, generator=generator))
    targets = method.teacher_targets({"sig": sig_teacher, "gaf": gaf_teacher}, LABELS)

    out = student(_student_inputs())
    loss, _ = method(out, targets, LABELS, progress=0.0)
    loss.backward()

    assert torch.equal(out.image_head_weights["gaf"], student.image_head_weight("gaf"))
    _assert_every_parameter_trained(student.image_trunks["gaf"])
    head_gradient = student.classifier.weight.grad
    assert head_gradient[:, 64:].abs().sum(dim=1).min() > 0
    assert head_gradient[:, :64].abs().sum() == 0
    assert _gradient_size(student.sig_trunk) == 0


# --- featkd --------------------------------------------------------------------------------


def _featkd(student_dim, teacher_dim):
    config = TrialConfig(lambda1=0.0, lambda2=0.0, lambda3=1.0)
    dims = {"student": student_dim, "sig": teacher_dim}
    return build_method("featkd", config, ("sig",), dims)


@pytest.mark.parametrize(
    "student_map, teacher_map, expected",
    [
        # Same length: differences [[0, 2, 0], [-2, 0, 1]] -> squares sum 9 over 6 entries.
        ([[[1.0, 2.0, 3.0], [0.0, -1.0, 1.0]]], [[[1.0, 0.0, 3.0], [2.0, -1.0, 0.0]]], 1.5),
        # Length 4 -> 2 (linear, align_corners=False, a factor of 2): pair means [2, 4];
        # against [1, 1]: (1 + 9) / 2.
        ([[[1.0, 3.0, 2.0, 6.0]]], [[[1.0, 1.0]]], 5.0),
    ],
    ids=["same-length", "resized"],
)
def test_featkd_with_equal_widths_matches_the_maps_directly(student_map, teacher_map, expected):
    student_map, teacher_map = torch.tensor(student_map), torch.tensor(teacher_map)
    width = student_map.shape[1]
    method = _featkd(width, width)
    labels = torch.tensor([0])
    targets = method.teacher_targets({"sig": _teacher(teacher_map)}, labels)

    _, parts = method(_output(sig_map=student_map), targets, labels, progress=0.0)

    assert isinstance(method.regressor, nn.Identity)
    assert not list(method.parameters())
    assert parts["aux"] == pytest.approx(expected, rel=1e-6)


def test_featkd_regresses_a_narrower_student_with_a_1x1_convolution():
    method = _featkd(2, 3)
    regressor = method.regressor
    assert isinstance(regressor, nn.Conv1d)
    assert regressor.weight.shape == (3, 2, 1)
    assert regressor.bias.shape == (3,)

    with torch.no_grad():
        regressor.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])[:, :, None])
        regressor.bias.zero_()
    labels = torch.tensor([0])
    targets = method.teacher_targets({"sig": _teacher(torch.zeros(1, 3, 2))}, labels)
    student_map = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])

    _, parts = method(_output(sig_map=student_map), targets, labels, progress=0.0)

    # Regressed map [[1, 2], [3, 4], [4, 6]] against zeros: (1 + 4 + 9 + 16 + 16 + 36) / 6.
    assert parts["aux"] == pytest.approx(82 / 6, rel=1e-6)


def test_featkd_trains_the_sig_branch_and_the_regressor():
    config = TrialConfig(lambda1=0.0, lambda2=0.0, lambda3=1.0)
    method = build_method("featkd", config, ("sig",), {"student": 64, "sig": 32})
    student = _student(("sig",), fusion=method.fusion)
    # The student's map is (4, 64, 10); the teacher's is narrower and shorter.
    teacher = _teacher(torch.randn(4, 32, 5, generator=torch.Generator().manual_seed(3)))
    targets = method.teacher_targets({"sig": teacher}, LABELS)

    loss, _ = method(student(_student_inputs()), targets, LABELS, progress=0.0)
    loss.backward()

    _assert_every_parameter_trained(student.sig_trunk)
    _assert_every_parameter_trained(method.regressor)


# --- pckd ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "progress, expected",
    [(0.0, 1), (0.19, 1), (0.2, 2), (0.59, 2), (0.6, 3), (0.99, 3)],
)
def test_pckd_stages_for_p1_0_2_and_r_0_5(progress, expected):
    # p2 = 0.5 * (1 - 0.2) = 0.4: stage 1 is [0, 0.2), stage 2 [0.2, 0.6), stage 3 the rest.
    assert stage(progress, 0.2, 0.5) == expected


def _pckd(teachers, **weights):
    config = TrialConfig(lambda1=1.0, lambda2=0.0, lambda3=1.0, branches="sig+gaf", **weights)
    dims = {"student": 2, **{name: 2 for name in teachers}}
    return build_method("pckd", config, teachers, dims)


def _set_linear(layer: nn.Linear, weight):
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(weight))
        layer.bias.zero_()


def test_pckd_stage_1_matches_projected_image_features_to_the_sig_teacher():
    method = _pckd(("sig", "gaf"), p1=0.2, r=0.5, w1=2.0, w2=10.0, w3=10.0)
    _set_linear(method.stage1, [[1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1])
    outputs = {
        "sig": _teacher(features=[[1.0, 0.0], [0.0, 2.0]], windows=2),
        "gaf": _teacher(features=[[5.0, 5.0], [5.0, 5.0]], windows=2),
    }
    targets = method.teacher_targets(outputs, labels)
    features = {
        "sig": torch.tensor([[9.0, 9.0], [9.0, 9.0]]),
        "gaf": torch.tensor([[3.0, 4.0], [0.0, 5.0]]),
    }

    loss, parts = method(_output(windows=2, features=features), targets, labels, progress=0.1)

    # Window 1: [3, 4] -> [0.6, 0.8] against [1, 0]: 0.4^2 + 0.8^2 = 0.8.
    # Window 2: [0, 5] -> [0, 1] against [0, 2] -> [0, 1]: 0. Batch mean 0.4, times w1 = 2.
    assert parts["aux"] == pytest.approx(0.8, rel=1e-6)
    assert set(parts) == {"ce", "aux"}
    assert float(loss.detach()) == pytest.approx(LN2 + 0.8, rel=1e-6)


def test_pckd_stage_2_matches_projected_sig_features_to_the_image_teachers_mean():
    method = _pckd(("sig", "gaf", "pi"), p1=0.2, r=0.5, w1=10.0, w2=0.5, w3=10.0)
    _set_linear(method.stage2, [[0.0, 1.0], [1.0, 0.0]])
    labels = torch.tensor([0])
    outputs = {
        "sig": _teacher(features=[[1.0, 1.0]]),
        "gaf": _teacher(features=[[0.0, 3.0]]),
        "pi": _teacher(features=[[2.0, 0.0]]),
    }
    targets = method.teacher_targets(outputs, labels)
    features = {"sig": torch.tensor([[4.0, 3.0]]), "gaf": torch.tensor([[1.0, 0.0]])}

    _, parts = method(_output(features=features), targets, labels, progress=0.3)

    # Swapped [4, 3] -> [3, 4] -> [0.6, 0.8]. Teachers [0, 1] and [1, 0] average to
    # [0.5, 0.5] -> [1, 1] / sqrt 2. Squared distance of unit vectors: 2 - 2 * (1.4 / sqrt 2).
    assert parts["aux"] == pytest.approx(0.5 * (2.0 - 1.4 * math.sqrt(2.0)), rel=1e-5)


def test_pckd_stage_3_matches_both_student_branches_to_all_teachers():
    method = _pckd(("sig", "gaf", "pi"), p1=0.2, r=0.5, w1=10.0, w2=10.0, w3=3.0)
    assert method.stage3.weight.shape == (6, 4)
    _set_linear(method.stage3, torch.cat([torch.eye(4), torch.zeros(2, 4)]))
    labels = torch.tensor([0])
    outputs = {
        "sig": _teacher(features=[[2.0, 0.0]]),
        "gaf": _teacher(features=[[0.0, 5.0]]),
        "pi": _teacher(features=[[3.0, 0.0]]),
    }
    targets = method.teacher_targets(outputs, labels)
    features = {"sig": torch.tensor([[1.0, 0.0]]), "gaf": torch.tensor([[0.0, 1.0]])}

    _, parts = method(_output(features=features), targets, labels, progress=0.7)

    # Student [1, 0, 0, 1] -> projected [1, 0, 0, 1, 0, 0] / sqrt 2. Teachers normalised
    # [1, 0], [0, 1], [1, 0] -> [1, 0, 0, 1, 1, 0] / sqrt 3. Dot 2 / sqrt 6, so the squared
    # distance is 2 - 4 / sqrt 6; times w3 = 3.
    assert parts["aux"] == pytest.approx(3.0 * (2.0 - 4.0 / math.sqrt(6.0)), rel=1e-5)


def test_pckd_refuses_image_teachers_of_different_widths():
    config = TrialConfig(branches="sig+gaf")
    dims = {"student": 4, "sig": 4, "gaf": 4, "pi": 8}
    with pytest.raises(ValueError, match="one width"):
        build_method("pckd", config, ("sig", "gaf", "pi"), dims)


def test_pckd_refuses_a_student_without_a_gaf_branch():
    dims = {"student": 4, "sig": 4, "gaf": 4}
    with pytest.raises(ValueError, match="gaf branch"):
        build_method("pckd", TrialConfig(branches="sig"), ("sig", "gaf"), dims)


@pytest.mark.parametrize(
    "progress, trained, untouched, trained_branch, untouched_branch",
    [
        (0.1, "stage1", ("stage2", "stage3"), "gaf", "sig"),
        (0.4, "stage2", ("stage1", "stage3"), "sig", "gaf"),
        (0.8, "stage3", ("stage1", "stage2"), None, None),
    ],
    ids=["stage-1", "stage-2", "stage-3"],
)
def test_pckd_trains_the_stages_projection_and_the_branches_it_reads(
    progress, trained, untouched, trained_branch, untouched_branch
):
    config = TrialConfig(lambda1=0.0, lambda2=0.0, lambda3=1.0, branches="sig+gaf", p1=0.2, r=0.5)
    method = build_method("pckd", config, ("sig", "gaf"), {"student": 64, "sig": 32, "gaf": 48})
    student = _student(("sig", "gaf"), fusion=method.fusion)
    generator = torch.Generator().manual_seed(4)
    outputs = {
        "sig": _teacher(features=torch.randn(4, 32, generator=generator), windows=4),
        "gaf": _teacher(features=torch.randn(4, 48, generator=generator), windows=4),
    }
    targets = method.teacher_targets(outputs, LABELS)

    loss, _ = method(student(_student_inputs()), targets, LABELS, progress=progress)
    loss.backward()

    branches = {"sig": student.sig_trunk, "gaf": student.image_trunks["gaf"]}
    _assert_every_parameter_trained(getattr(method, trained))
    for name in untouched:
        assert all(p.grad is None for p in getattr(method, name).parameters()), name
    for name in (trained_branch,) if trained_branch else ("sig", "gaf"):
        _assert_every_parameter_trained(branches[name])
    if untouched_branch:
        assert _gradient_size(branches[untouched_branch]) == 0
