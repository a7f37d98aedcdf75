"""engine.data.transforms against hand-computed expectations."""

from __future__ import annotations

import numpy as np
import pytest

from engine.data import transforms as T


@pytest.fixture
def batch():
    return np.random.default_rng(0).random((4, 2, 6, 7)).astype(np.float32)


def shifted(x: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """np.roll by (dy, dx) with the wrapped-around rows/columns zeroed."""
    out = np.roll(x, (dy, dx), axis=(-2, -1))
    if dy > 0:
        out[..., :dy, :] = 0
    elif dy < 0:
        out[..., dy:, :] = 0
    if dx > 0:
        out[..., :, :dx] = 0
    elif dx < 0:
        out[..., :, dx:] = 0
    return out


@pytest.mark.parametrize("dx,dy", [(0, 0), (2, 0), (0, -1), (-3, 2), (1, 1)])
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_integer_translation_is_roll_with_zero_fill(batch, dx, dy, interpolation):
    np.testing.assert_array_equal(T.translate(batch, dx, dy, interpolation=interpolation), shifted(batch, dx, dy))


def test_per_sample_translation(batch):
    out = T.translate(batch, np.array([1, 0, -2, 3]), np.array([0, 1, 0, -1]))
    for i, (dx, dy) in enumerate([(1, 0), (0, 1), (-2, 0), (3, -1)]):
        np.testing.assert_array_equal(out[i], shifted(batch[i], dx, dy))


def test_half_pixel_translation_is_the_average_of_neighbours():
    x = np.arange(5, dtype=np.float32).reshape(1, 1, 1, 5)
    np.testing.assert_allclose(T.translate(x, 0.5, 0)[0, 0, 0], [0, 0.5, 1.5, 2.5, 3.5])


def test_rotation_by_90_degrees_is_rot90_counter_clockwise():
    x = np.random.default_rng(1).random((1, 1, 5, 5))
    from engine.data.transforms import _centered_inverse

    m = _centered_inverse(np.array([90.0]), np.ones(1), np.zeros(1), np.zeros(1), 5, 5)
    np.testing.assert_allclose(T.affine(x, m)[0, 0], np.rot90(x[0, 0]), atol=1e-12)


def test_random_affine_identity_and_scaling_about_the_centre(batch):
    np.testing.assert_array_equal(T.RandomAffine()(batch, np.random.default_rng(0)), batch)
    x = np.zeros((1, 1, 5, 5), np.float32)
    x[0, 0, 2, 3] = 1.0  # one pixel right of the centre
    out = T.RandomAffine(scale=(2.0, 2.0))(x, np.random.default_rng(0))
    # zoom x2 about (2, 2): output (r, c) samples input (2 + (r-2)/2, 2 + (c-2)/2), bilinearly
    expected = np.zeros((5, 5))
    expected[1:4, 3:5] = [[0.25, 0.5], [0.5, 1.0], [0.25, 0.5]]
    np.testing.assert_allclose(out[0, 0], expected, atol=1e-7)


def test_random_affine_is_vectorized_and_seeded(batch):
    t = T.RandomAffine(degrees=20, translate=(0.2, 0.2), scale=(0.8, 1.2))
    a, b = t(batch, np.random.default_rng(5)), t(batch, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert a.shape == batch.shape and a.dtype == np.float32
    assert not np.allclose(a[0], batch[0])


def test_horizontal_flip(batch):
    out = T.RandomHorizontalFlip(p=1.0)(batch, np.random.default_rng(0))
    np.testing.assert_array_equal(out, batch[..., ::-1])
    np.testing.assert_array_equal(T.RandomHorizontalFlip(p=0.0)(batch, np.random.default_rng(0)), batch)
    rng_draw = np.random.default_rng(3).random(4) < 0.5
    out = T.RandomHorizontalFlip()(batch, np.random.default_rng(3))
    for i, f in enumerate(rng_draw):
        np.testing.assert_array_equal(out[i], batch[i, :, :, ::-1] if f else batch[i])


def test_random_crop_with_padding_matches_slicing_the_padded_image(batch):
    out = T.RandomCrop((6, 7), padding=2)(batch, np.random.default_rng(4))
    rng = np.random.default_rng(4)
    oy, ox = rng.integers(0, 5, 4), rng.integers(0, 5, 4)
    padded = np.pad(batch, ((0, 0), (0, 0), (2, 2), (2, 2)))
    for i in range(4):
        np.testing.assert_array_equal(out[i], padded[i, :, oy[i]:oy[i] + 6, ox[i]:ox[i] + 7])
    # the crop is a translation by an integer shift with zero fill
    dx, dy = 2 - ox, 2 - oy
    for i in range(4):
        np.testing.assert_array_equal(out[i], shifted(batch[i], int(dx[i]), int(dy[i])))
    with pytest.raises(ValueError, match="crop 9x9 larger than the padded image 6x7"):
        T.RandomCrop(9)(batch)


def test_normalize_tofloat_compose_and_single_image():
    x = np.array([[[[0, 255]], [[51, 102]]]], np.uint8)  # (1, 2, 1, 2)
    t = T.Compose([T.ToFloat(), T.Normalize([0.5, 0.2], [0.5, 0.1])])
    out = t(x, np.random.default_rng(0))
    np.testing.assert_allclose(out, [[[[-1, 1]], [[0, 2]]]], atol=1e-6)
    assert out.dtype == np.float32
    np.testing.assert_allclose(t(x[0]), out[0], atol=1e-6)  # (C, H, W) works too
    with pytest.raises(ValueError, match="2 means / 2 stds for 3 channels"):
        T.Normalize([0, 0], [1, 1])(np.zeros((1, 3, 2, 2), np.float32))
    with pytest.raises(ValueError, match=r"expected \(N, C, H, W\) or \(C, H, W\), got shape \(2, 2\)"):
        T.RandomHorizontalFlip()(np.zeros((2, 2)))


def test_fill_value_outside_the_image():
    x = np.ones((1, 1, 3, 3), np.float32)
    out = T.translate(x, 1, 0, fill=-1.0)
    np.testing.assert_array_equal(out[0, 0, :, 0], [-1, -1, -1])
    np.testing.assert_array_equal(out[0, 0, :, 1:], np.ones((3, 2)))
