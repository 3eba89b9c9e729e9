"""Map helpers against values worked out by hand on tiny tensors."""

import pytest
import torch

from mmkd.maps import (
    attention_map_1d,
    class_activation_map,
    collapse_to_time,
    normalise_map,
    normalise_profile,
    resize_map,
    resize_profile,
)


def test_attention_map_1d_sums_squares_over_channels():
    feature_map = torch.tensor([[[1.0, -2.0, 0.0], [3.0, 1.0, -1.0]]])

    # t=0: 1 + 9, t=1: 4 + 1, t=2: 0 + 1.
    expected = torch.tensor([[10.0, 5.0, 1.0]])
    torch.testing.assert_close(attention_map_1d(feature_map), expected)


def test_class_activation_map_uses_each_samples_class_and_clips_negatives():
    channel0 = [[1.0, 2.0], [3.0, 0.0]]
    channel1 = [[0.0, 1.0], [2.0, 4.0]]
    feature_map = torch.tensor([[channel0, channel1]] * 2)
    weight = torch.tensor([[0.5, 0.5], [1.0, -1.0]])
    labels = torch.tensor([1, 0])

    # Class 1: channel0 - channel1 = [[1, 1], [1, -4]], the -4 clipped by the ReLU.
    # Class 0: (channel0 + channel1) / 2 = [[0.5, 1.5], [2.5, 2]].
    expected = torch.tensor([[[1.0, 1.0], [1.0, 0.0]], [[0.5, 1.5], [2.5, 2.0]]])
    torch.testing.assert_close(class_activation_map(feature_map, weight, labels), expected)


def test_collapse_to_time_averages_row_and_column_means():
    map2d = torch.tensor([[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]])

    # Row means 2, 5, 8; column means 4, 5, 6.
    expected = torch.tensor([[3.0, 5.0, 7.0]])
    torch.testing.assert_close(collapse_to_time(map2d), expected)


def test_collapse_to_time_refuses_a_non_square_map():
    with pytest.raises(ValueError, match="square"):
        collapse_to_time(torch.zeros(1, 2, 3))


def test_resize_profile_two_to_four_clamps_at_the_edges():
    profile = torch.tensor([[1.0, 3.0]])

    # Source positions (i + 0.5) / 2 - 0.5: -0.25 (clamped to 0), 0.25, 0.75, 1.25 (past the
    # last sample, so the last value).
    expected = torch.tensor([[1.0, 1.5, 2.5, 3.0]])
    torch.testing.assert_close(resize_profile(profile, 4), expected)


def test_resize_map_two_to_four_is_separable_linear():
    # M[i, j] = 8i + 4j; each axis resamples 0, 1 to 0, 0.25, 0.75, 1.
    map2d = torch.tensor([[[0.0, 4.0], [8.0, 12.0]]])

    expected = torch.tensor(
        [
            [
                [0.0, 1.0, 3.0, 4.0],
                [2.0, 3.0, 5.0, 6.0],
                [6.0, 7.0, 9.0, 10.0],
                [8.0, 9.0, 11.0, 12.0],
            ]
        ]
    )
    torch.testing.assert_close(resize_map(map2d, 4), expected)


def test_normalise_profile_to_mean_one_keeps_zero_sample_zero():
    profile = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])

    expected = torch.tensor([[0.5, 1.0, 1.5], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(normalise_profile(profile), expected)


def test_normalise_map_to_max_one_keeps_zero_sample_zero():
    map2d = torch.tensor([[[0.0, 2.0], [4.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]])

    expected = torch.tensor([[[0.0, 0.5], [1.0, 0.25]], [[0.0, 0.0], [0.0, 0.0]]])
    torch.testing.assert_close(normalise_map(map2d), expected)


def test_maps_refuse_the_wrong_number_of_axes():
    with pytest.raises(ValueError, match=r"\(B, C, T\)"):
        attention_map_1d(torch.zeros(3, 4))
