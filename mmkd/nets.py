"""Wide residual networks (Zagoruyko & Komodakis, BMVC 2016) in 1D and 2D, and the student.

The teachers are WRN-d-k networks: the Sig teacher a 1D one on (batch, channels, length),
the GAF and PI teachers 2D ones on (batch, channels, height, width). The student has a Sig
branch and optionally GAF and PI branches, fused by cross-attention (Sig tokens query the
GAF tokens) or by pooling, under one linear classifier.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import urlparse
from urllib.request import url2pathname

import torch
from torch import Tensor, nn

_CONVS = {1: nn.Conv1d, 2: nn.Conv2d}
_NORMS = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}
_IMAGE_BRANCHES = ("gaf", "pi")
_FUSIONS = ("attention", "pool")


def _global_average(feature_map: Tensor) -> Tensor:
    """Mean over every axis after the channel axis: (B, C, ...) -> (B, C)."""
    return feature_map.flatten(2).mean(dim=2)


def _initialise(module: nn.Module) -> None:
    """Kaiming-normal convolutions, unit batch norms and zero linear biases."""
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


class _PreActivationBlock(nn.Module):
    """BN-ReLU-conv3-BN-ReLU-dropout-conv3 plus a shortcut (1x1 conv when the shape changes)."""

    def __init__(
        self, dims: int, in_channels: int, out_channels: int, stride: int, dropout: float
    ) -> None:
        super().__init__()
        conv, norm = _CONVS[dims], _NORMS[dims]
        self.norm1 = norm(in_channels)
        self.conv1 = conv(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.norm2 = norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = conv(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = conv(in_channels, out_channels, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        activated = torch.relu(self.norm1(x))

        # As in the reference WRN, a projecting shortcut sees the pre-activated input.
        residual = x if self.shortcut is None else self.shortcut(activated)

        out = self.conv1(activated)
        out = self.dropout(torch.relu(self.norm2(out)))
        return self.conv2(out) + residual


class _WideResNetTrunk(nn.Module):
    """Stem conv3, three groups of n pre-activation blocks (strides 1, 2, 2), final BN-ReLU."""

    def __init__(
        self, dims: int, in_channels: int, depth: int, width: int, dropout: float
    ) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6 != 0:
            raise ValueError(f"WRN depth must be 6n+4 with n >= 1 (10, 16, 22, ...), got {depth}")
        if width < 1:
            raise ValueError(f"WRN width must be a positive integer, got {width}")
        blocks_per_group = (depth - 4) // 6
        widths = (16 * width, 32 * width, 64 * width)

        self.stem = _CONVS[dims](in_channels, 16, 3, padding=1, bias=False)
        layers = []
        channels = 16
        for group_channels, stride in zip(widths, (1, 2, 2), strict=True):
            for index in range(blocks_per_group):
                block_stride = stride if index == 0 else 1
                layers.append(
                    _PreActivationBlock(dims, channels, group_channels, block_stride, dropout)
                )
                channels = group_channels
        self.blocks = nn.Sequential(*layers)
        self.norm = _NORMS[dims](channels)
        self.out_channels = channels

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.norm(self.blocks(self.stem(x))))


class _WideResNet(nn.Module):
    """A WRN trunk, global average pooling and a linear classifier."""

    _dims: int

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        depth: int = 16,
        width: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.trunk = _WideResNetTrunk(self._dims, in_channels, depth, width, dropout)
        self.feature_channels = self.trunk.out_channels
        self.classifier = nn.Linear(self.feature_channels, num_classes)
        self.apply(_initialise)

    def forward_features(self, x: Tensor) -> Tensor:
        """The last feature map, after the final BN-ReLU: (B, 64k, ...)."""
        return self.trunk(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(_global_average(self.forward_features(x)))


class WideResNet1d(_WideResNet):
    """WRN-depth-width on (B, C, L); depth = 6n + 4, group widths 16k, 32k, 64k.

    `forward_features` returns (B, 64k, L') with L' = ceil(L / 4); `forward` the logits.
    """

    _dims = 1


class WideResNet2d(_WideResNet):
    """WRN-depth-width on (B, C, H, W); depth = 6n + 4, group widths 16k, 32k, 64k.

    `forward_features` returns (B, 64k, H', W') with H' = ceil(H / 4); `forward` the logits.
    """

    _dims = 2


def build_teacher(
    modality: str, in_channels: int, num_classes: int, depth: int, width: int
) -> nn.Module:
    """The teacher network for one modality: a 1D WRN for "sig", a 2D WRN for "gaf" and "pi"."""
    if modality == "sig":
        return WideResNet1d(in_channels, num_classes, depth=depth, width=width)
    if modality in _IMAGE_BRANCHES:
        return WideResNet2d(in_channels, num_classes, depth=depth, width=width)
    raise ValueError(f"unknown modality {modality!r}; expected one of sig, gaf, pi")


@dataclass
class StudentOutput:
    """What one forward pass of the student returns.

    Attributes:
        logits: (B, classes).
        sig_map: the Sig branch's tokens S, (B, d, Ts).
        image_maps: per image branch ("gaf", "pi") its map, (B, d, Hs, Ws).
        features: per branch its pooled map, (B, d); for "gaf" the pooled G, not the
            attended features.
        attention: Sig-to-GAF cross-attention weights averaged over heads, (B, Ts, Hs * Ws)
            with GAF tokens in row-major order; None without attention fusion.
        image_head_weights: per image branch the head's columns that read it, (classes, d),
            as `Student.image_head_weight` gives them (with gradient), for class-activation
            maps; under attention fusion the GAF columns read the attended features.
    """

    logits: Tensor
    sig_map: Tensor
    image_maps: dict[str, Tensor]
    features: dict[str, Tensor]
    attention: Tensor | None
    image_head_weights: dict[str, Tensor] = field(default_factory=dict)


class Student(nn.Module):
    """The student: a 1D WRN Sig branch, optional 2D WRN image branches, one linear head.

    Each image branch's map is brought to d = the Sig branch's channel count by a 1x1 conv
    when its own width differs. With fusion="attention" and a "gaf" branch, the Sig tokens
    (B, Ts, d) query the GAF tokens (B, Hs * Ws, d) through one multi-head attention, and
    the attended tokens averaged over Ts are the GAF part of the head's input; every other
    image branch (and the GAF one under fusion="pool") contributes its pooled map. The head
    is one linear layer over [pool(S), image parts in branch order].

    Args:
        in_channels: channels of the signal; the images carry one channel per signal channel.
        branches: "sig" first, then any of "gaf" and "pi".
        depth, width: the Sig branch's WRN.
        image_depth, image_width: each image branch's WRN.
        fusion: "attention" or "pool"; "attention" without a "gaf" branch pools.
        heads: attention heads; d must be divisible by it.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        branches: tuple[str, ...] = ("sig",),
        depth: int = 16,
        width: int = 1,
        image_depth: int = 10,
        image_width: int = 1,
        fusion: str = "attention",
        heads: int = 4,
    ) -> None:
        super().__init__()
        branches = tuple(branches)
        image_branches = branches[1:]
        if not branches or branches[0] != "sig":
            raise ValueError(f"student branches must start with 'sig', got {branches}")
        unknown = any(name not in _IMAGE_BRANCHES for name in image_branches)
        if unknown or len(set(image_branches)) != len(image_branches):
            raise ValueError(
                f"student branches after 'sig' must be distinct names from {_IMAGE_BRANCHES},"
                f" got {branches}"
            )
        if fusion not in _FUSIONS:
            raise ValueError(f"fusion must be one of {_FUSIONS}, got {fusion!r}")
        self.branches = branches
        self.fusion = fusion

        self.sig_trunk = _WideResNetTrunk(1, in_channels, depth, width, 0.0)
        self.feature_dim = self.sig_trunk.out_channels
        self.image_trunks = nn.ModuleDict()
        self.projections = nn.ModuleDict()
        for name in image_branches:
            trunk = _WideResNetTrunk(2, in_channels, image_depth, image_width, 0.0)
            self.image_trunks[name] = trunk
            if trunk.out_channels != self.feature_dim:
                self.projections[name] = nn.Conv2d(
                    trunk.out_channels, self.feature_dim, 1, bias=False
                )

        self.cross_attention = None
        if fusion == "attention" and "gaf" in image_branches:
            if self.feature_dim % heads != 0:
                raise ValueError(
                    f"attention heads ({heads}) must divide the feature size {self.feature_dim}"
                )
            self.cross_attention = nn.MultiheadAttention(self.feature_dim, heads, batch_first=True)

        self.classifier = nn.Linear(self.feature_dim * len(branches), num_classes)
        self.apply(_initialise)

    def image_head_weight(self, name: str) -> Tensor:
        """The classifier columns that read branch `name`'s image part: (classes, d)."""
        if name not in self.image_trunks:
            raise ValueError(f"the student has no image branch {name!r}; it has {self.branches}")
        start = self.branches.index(name) * self.feature_dim
        return self.classifier.weight[:, start : start + self.feature_dim]

    def forward(self, inputs: dict[str, Tensor]) -> StudentOutput:
        """Run the student on {"sig": (B, C, L), "gaf": (B, C, s, s), ...}.

        Inputs for branches the student lacks are ignored, so one dict serves every student.
        """
        missing = [name for name in self.branches if name not in inputs]
        if missing:
            raise KeyError(f"student inputs lack the branches {missing}; got {sorted(inputs)}")

        sig_map = self.sig_trunk(inputs["sig"])
        features = {"sig": _global_average(sig_map)}
        head_parts = [features["sig"]]
        image_maps = {}
        attention = None
        for name, trunk in self.image_trunks.items():
            image_map = trunk(inputs[name])
            if name in self.projections:
                image_map = self.projections[name](image_map)
            image_maps[name] = image_map
            features[name] = _global_average(image_map)

            if name == "gaf" and self.cross_attention is not None:
                sig_tokens = sig_map.transpose(1, 2)
                gaf_tokens = image_map.flatten(2).transpose(1, 2)
                attended, attention = self.cross_attention(
                    sig_tokens, gaf_tokens, gaf_tokens, need_weights=True
                )
                head_parts.append(attended.mean(dim=1))
            else:
                head_parts.append(features[name])

        logits = self.classifier(torch.cat(head_parts, dim=1))
        head_weights = {name: self.image_head_weight(name) for name in image_maps}
        return StudentOutput(logits, sig_map, image_maps, features, attention, head_weights)


def load_student(arguments: dict, checkpoint: str | os.PathLike) -> Student:
    """The student a trial trained, ready to classify: built from ``arguments`` (what
    ``mmkd-search best`` prints as ``student``) with the weights of ``checkpoint`` (a path,
    or the ``file://`` URI that ``best`` prints), in eval mode."""
    location = str(checkpoint)
    if location.startswith("file:"):
        location = url2pathname(urlparse(location).path)
    student = Student(**arguments)
    student.load_state_dict(torch.load(location, map_location="cpu", weights_only=True))
    return student.eval()
