"""Attention maps, class-activation maps and how they are compared (batch-first torch).

Time profiles are (B, T) and 2D maps (B, H, W). Before two maps are compared they are
resized to a common length or size (linear / bilinear, align_corners=False) and normalised
per sample: profiles to mean 1, 2D maps to max 1. An all-zero sample stays zero.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

EPS = 1e-8


def _check_ndim(tensor: Tensor, ndim: int, name: str, layout: str) -> None:
    if tensor.ndim != ndim:
        raise ValueError(f"{name} must be {layout}, got shape {tuple(tensor.shape)}")


def attention_map_1d(feature_map: Tensor) -> Tensor:
    """Attention map of a 1D feature map, a(t) = sum_c A[c, t]^2, not normalised.

    (B, C, T) -> (B, T).
    """
    _check_ndim(feature_map, 3, "feature_map", "(B, C, T)")
    return feature_map.pow(2).sum(dim=1)


def class_activation_map(feature_map: Tensor, weight: Tensor, labels: Tensor) -> Tensor:
    """Class-activation map of each sample's class y: ReLU(sum_c W[y, c] * F[c]).

    Args:
        feature_map: (B, C, H, W).
        weight: the classifier weights reading the pooled map, (classes, C).
        labels: (B,) class indices.

    Returns:
        (B, H, W).
    """
    _check_ndim(feature_map, 4, "feature_map", "(B, C, H, W)")
    _check_ndim(weight, 2, "weight", "(classes, C)")
    class_weight = weight[labels]
    return (class_weight[:, :, None, None] * feature_map).sum(dim=1).relu()


def collapse_to_time(map2d: Tensor) -> Tensor:
    """A GAF-shaped map as a time profile: the mean of its row means and column means.

    A GAF pixel (i, j) belongs to times i and j, so out[i] = (mean_j M[i, j] + mean_j M[j, i])
    / 2. (B, H, H) -> (B, H).
    """
    _check_ndim(map2d, 3, "map2d", "(B, H, W)")
    if map2d.shape[1] != map2d.shape[2]:
        raise ValueError(f"only a square map collapses to time, got shape {tuple(map2d.shape)}")
    return (map2d.mean(dim=2) + map2d.mean(dim=1)) / 2


def resize_profile(profile: Tensor, length: int) -> Tensor:
    """Linear resampling of time profiles, (B, T) -> (B, length)."""
    _check_ndim(profile, 2, "profile", "(B, T)")
    resized = F.interpolate(profile[:, None], size=length, mode="linear", align_corners=False)
    return resized[:, 0]


def resize_map(map2d: Tensor, size: int) -> Tensor:
    """Bilinear resampling of 2D maps, (B, H, W) -> (B, size, size)."""
    _check_ndim(map2d, 3, "map2d", "(B, H, W)")
    resized = F.interpolate(
        map2d[:, None], size=(size, size), mode="bilinear", align_corners=False
    )
    return resized[:, 0]


def normalise_profile(profile: Tensor) -> Tensor:
    """Each sample scaled to mean 1: p / (mean(p) + EPS); an all-zero profile stays zero."""
    _check_ndim(profile, 2, "profile", "(B, T)")
    return profile / (profile.mean(dim=1, keepdim=True) + EPS)


def normalise_map(map2d: Tensor) -> Tensor:
    """Each sample scaled to max 1: m / (max(m) + EPS); an all-zero map stays zero."""
    _check_ndim(map2d, 3, "map2d", "(B, H, W)")
    return map2d / (map2d.amax(dim=(1, 2), keepdim=True) + EPS)
