"""Shapes, head layout and gradient flow of the teachers' WRNs and the student."""

import pytest
import torch
import torch.nn.functional as F

from mmkd.nets import Student, StudentOutput, WideResNet1d, WideResNet2d, build_teacher

CHANNELS = 3
CLASSES = 4
BATCH = 2
SIG_LENGTH = 30
IMAGE_SIZE = 16


def _inputs(branches):
    generator = torch.Generator().manual_seed(0)
    shapes = {
        "sig": (BATCH, CHANNELS, SIG_LENGTH),
        "gaf": (BATCH, CHANNELS, IMAGE_SIZE, IMAGE_SIZE),
        "pi": (BATCH, CHANNELS, IMAGE_SIZE, IMAGE_SIZE),
    }
    return {name: torch.randn(shapes[name], generator=generator) for name in branches}


@pytest.mark.parametrize("depth", [10, 16])
@pytest.mark.parametrize("width", [1, 3])
def test_wrn1d_on_length_100(depth, width):
    net = WideResNet1d(CHANNELS, CLASSES, depth=depth, width=width)
    x = torch.randn(BATCH, CHANNELS, 100)

    assert net.feature_channels == 64 * width
    assert net.classifier.weight.shape == (CLASSES, 64 * width)
    assert net.forward_features(x).shape == (BATCH, 64 * width, 25)
    assert net(x).shape == (BATCH, CLASSES)


@pytest.mark.parametrize("depth", [10, 16])
@pytest.mark.parametrize("width", [1, 3])
def test_wrn2d_on_32x32(depth, width):
    net = WideResNet2d(CHANNELS, CLASSES, depth=depth, width=width)
    x = torch.randn(BATCH, CHANNELS, 32, 32)

    assert net.feature_channels == 64 * width
    assert net.classifier.weight.shape == (CLASSES, 64 * width)
    assert net.forward_features(x).shape == (BATCH, 64 * width, 8, 8)
    assert net(x).shape == (BATCH, CLASSES)


def test_wrn_depth_16_has_two_blocks_per_group_and_depth_10_one():
    assert len(WideResNet1d(CHANNELS, CLASSES, depth=16).trunk.blocks) == 6
    assert len(WideResNet2d(CHANNELS, CLASSES, depth=10).trunk.blocks) == 3


def test_wrn_logits_are_the_classifier_on_pooled_features():
    net = WideResNet1d(CHANNELS, CLASSES, depth=10).eval()
    x = torch.randn(BATCH, CHANNELS, SIG_LENGTH)

    pooled = net.forward_features(x).mean(dim=2)
    torch.testing.assert_close(net(x), net.classifier(pooled))


def test_wrn_refuses_a_depth_not_6n_plus_4():
    with pytest.raises(ValueError, match="6n\\+4"):
        WideResNet1d(CHANNELS, CLASSES, depth=12)


def test_build_teacher_picks_the_network_by_modality():
    assert isinstance(build_teacher("sig", CHANNELS, CLASSES, 10, 1), WideResNet1d)
    assert isinstance(build_teacher("gaf", CHANNELS, CLASSES, 10, 1), WideResNet2d)
    assert isinstance(build_teacher("pi", CHANNELS, CLASSES, 10, 1), WideResNet2d)
    with pytest.raises(ValueError, match="modality"):
        build_teacher("fft", CHANNELS, CLASSES, 10, 1)


@pytest.mark.parametrize(
    "branches", [("sig",), ("sig", "gaf"), ("sig", "gaf", "pi"), ("sig", "pi")]
)
@pytest.mark.parametrize("fusion", ["attention", "pool"])
def test_student_output_shapes(branches, fusion):
    student = Student(CHANNELS, CLASSES, branches=branches, depth=10, fusion=fusion)
    out = student(_inputs(branches))

    d = 64
    assert isinstance(out, StudentOutput)
    assert out.logits.shape == (BATCH, CLASSES)
    assert out.sig_map.shape == (BATCH, d, 8)
    assert set(out.image_maps) == set(branches) - {"sig"}
    for image_map in out.image_maps.values():
        assert image_map.shape == (BATCH, d, 4, 4)
    assert set(out.features) == set(branches)
    for features in out.features.values():
        assert features.shape == (BATCH, d)
    assert student.classifier.weight.shape == (CLASSES, d * len(branches))

    if fusion == "attention" and "gaf" in branches:
        assert out.attention.shape == (BATCH, 8, 16)
        torch.testing.assert_close(out.attention.sum(dim=2), torch.ones(BATCH, 8))
    else:
        assert out.attention is None


def test_student_projects_a_wider_image_trunk_to_the_sig_width():
    student = Student(CHANNELS, CLASSES, branches=("sig", "gaf"), depth=10, image_width=3)
    out = student(_inputs(("sig", "gaf")))

    assert set(student.projections) == {"gaf"}
    assert out.image_maps["gaf"].shape == (BATCH, 64, 4, 4)
    assert student.image_head_weight("gaf").shape == (CLASSES, 64)


def test_student_logits_with_pool_fusion_are_the_head_on_branch_features():
    branches = ("sig", "gaf", "pi")
    student = Student(CHANNELS, CLASSES, branches=branches, depth=10, fusion="pool").eval()
    out = student(_inputs(branches))

    head_input = torch.cat([out.features[name] for name in branches], dim=1)
    torch.testing.assert_close(out.logits, student.classifier(head_input))

    # The same logits from the per-branch columns: image_head_weight selects the right ones.
    sig_weight = student.classifier.weight[:, :64]
    logits = out.features["sig"] @ sig_weight.T + student.classifier.bias
    for name in ("gaf", "pi"):
        assert student.image_head_weight(name).shape == (CLASSES, 64)
        logits = logits + out.features[name] @ student.image_head_weight(name).T
    torch.testing.assert_close(out.logits, logits)


def test_student_image_head_weight_refuses_a_missing_branch():
    student = Student(CHANNELS, CLASSES, branches=("sig", "gaf"), depth=10)
    with pytest.raises(ValueError, match="pi"):
        student.image_head_weight("pi")


def test_student_refuses_unknown_branches_and_fusion():
    with pytest.raises(ValueError, match="start with 'sig'"):
        Student(CHANNELS, CLASSES, branches=("gaf",))
    with pytest.raises(ValueError, match="distinct"):
        Student(CHANNELS, CLASSES, branches=("sig", "gaf", "gaf"))
    with pytest.raises(ValueError, match="fusion"):
        Student(CHANNELS, CLASSES, fusion="concat")
    with pytest.raises(ValueError, match="heads"):
        Student(CHANNELS, CLASSES, branches=("sig", "gaf"), heads=5)


def test_student_reports_missing_inputs():
    student = Student(CHANNELS, CLASSES, branches=("sig", "gaf"), depth=10)
    with pytest.raises(KeyError, match="gaf"):
        student(_inputs(("sig",)))


def test_cross_entropy_reaches_every_student_parameter_with_attention():
    branches = ("sig", "gaf", "pi")
    student = Student(CHANNELS, CLASSES, branches=branches, depth=10, image_width=2)
    out = student(_inputs(branches))

    F.cross_entropy(out.logits, torch.tensor([0, 3])).backward()

    for name, parameter in student.named_parameters():
        assert parameter.grad is not None, name
        assert parameter.grad.abs().sum() > 0, name
