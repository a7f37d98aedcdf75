"""The channel-blocked Winograd weight gradient (backends/numba/conv/nchwc_wgrad.py) vs a float64 numpy reference
and the NCHW Winograd weight gradient: channel counts that are not multiples of the 16-lane block (pad lanes zero
in the inputs, never written into out), odd planes, paddings 0..2 (asymmetric too), batch 1 and 3, F(2x2) and
F(4x4); NCHW inputs read without a blocked copy; batch chunks; the parallel kernels bit-equal to the serial ones (a
fixed reduction order); through the kernel table as ``nchwc-winograd-f2`` / ``-f4`` with non-contiguous inputs;
bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

from backends.numba.blocked.reorder import to_blocked
from backends.numba.conv import nchwc_wgrad, select
from backends.numba.conv.nchwc_wgrad import weight_grad3x3, weight_grad_nchw
from backends.numba.conv.winograd import winograd_weight_grad
from backends.numba.gemm import VL
from tests.helpers import run_kernel

pytest.importorskip("backends.numba")


def _pad(p):
    return p if isinstance(p, tuple) else ((p, p), (p, p))


def _attrs(p):
    return {"stride": (1, 1), "padding": _pad(p), "dilation": (1, 1), "groups": 1}


def _blocked(a: np.ndarray) -> np.ndarray:
    n, c, h, w = a.shape
    out = np.full((n, -(-c // VL), h, w, VL), 7, np.float32)  # junk first: to_blocked writes the pad lanes' zeros
    to_blocked(a, out, VL)
    return out


def _case(rng, n, c, h, w, o, p):
    (pt, pb), (pl, pr) = _pad(p)
    x = np.maximum(rng.standard_normal((n, c, h, w)), 0).astype(np.float32)  # ReLU-like, as in training
    gy = rng.standard_normal((n, o, h + pt + pb - 2, w + pl + pr - 2)).astype(np.float32)
    (ref,) = run_kernel("numpy", "conv2d_weight_grad", [x.astype(np.float64), gy.astype(np.float64)],
                        weight_shape=(o, c, 3, 3), **_attrs(p))
    return x, gy, ref


def _rel(got, ref):
    return float(np.abs(got - ref).max() / np.abs(ref).max())


# float32 Winograd error levels (module docstring): F(2x2) ~1e-6, F(4x4) ~1e-5 of max |gW|
TOL = {2: 2e-6, 4: 2e-5}
# (batch, C, H, W, O, padding)
CASES = [
    (3, 24, 7, 7, 40, 1),  # 24 -> 40: pad lanes on both sides; odd plane
    (1, 5, 5, 5, 3, 0),  # fewer channels than a block, 3x3 output
    (3, 17, 5, 6, 33, 2),  # one block and a lane; more than one register-tile panel of output channels
    (1, 40, 9, 8, 24, ((0, 2), (1, 0))),  # asymmetric padding; odd panel count (3 input blocks)
    (2, 8, 1, 1, 6, 1),  # one input pixel
    (2, 20, 8, 8, 18, 1),  # whole tiles for both m: blocked gy read in place
]
IDS = [f"n{n}-c{c}-{h}x{w}-o{o}-p{p}" for n, c, h, w, o, p in CASES]


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("n,c,h,w,o,p", CASES, ids=IDS)
def test_blocked_weight_grad_vs_float64_reference(rng, n, c, h, w, o, p, m):
    x, gy, ref = _case(rng, n, c, h, w, o, p)
    out = np.full((o, c, 3, 3), 7, np.float32)  # junk: every weight must be written
    weight_grad3x3(_blocked(x), _blocked(gy), out, _pad(p), m)
    assert _rel(out, ref) < TOL[m]
    nchw = np.empty_like(out)  # the NCHW Winograd of the same tile (its own F(4x4) points): the same gradient
    winograd_weight_grad(x, gy, nchw, _pad(p), m=m)
    np.testing.assert_allclose(out, nchw, rtol=0, atol=2 * TOL[m] * np.abs(ref).max())
    direct = np.full_like(out, 7)  # NCHW x and gy moved into the padded planes directly: the same planes, bits
    weight_grad_nchw(x, gy, direct, _pad(p), m)
    np.testing.assert_array_equal(direct, out)


@pytest.mark.parametrize("m", [2, 4])
def test_batch_chunks_and_parallel_items_are_deterministic(rng, m, monkeypatch):
    """Several batch chunks (dU kept per item across them): the gradient to float32 rounding; the threaded kernels:
    the same bits as one thread, since every dU element is summed over the tiles in one order."""
    x, gy, ref = _case(rng, 3, 40, 6, 7, 36, 1)
    xb, gyb = _blocked(x), _blocked(gy)
    runs = []
    for chunk_bytes, serial_macs in ((1 << 30, 1 << 60), (1, 0), (1 << 30, 0)):  # one thread; 3 chunks; threads
        monkeypatch.setattr(nchwc_wgrad, "CHUNK_BYTES", chunk_bytes)
        monkeypatch.setattr(nchwc_wgrad, "SERIAL_MACS", serial_macs)
        out = np.full((36, 40, 3, 3), 7, np.float32)
        weight_grad3x3(xb, gyb, out, 1, m)
        runs.append(out)
    assert _rel(runs[0], ref) < TOL[m]
    np.testing.assert_allclose(runs[1], runs[0], rtol=0, atol=2 * TOL[m] * np.abs(ref).max())
    np.testing.assert_array_equal(runs[2], runs[0])


@pytest.mark.parametrize("algo", ["nchwc-winograd-f2", "nchwc-winograd-f4"])
def test_through_the_kernel_table(rng, algo, monkeypatch):
    """Forced by the policy: conv2d_weight_grad on NCHW float32 (non-contiguous x) runs the blocked kernel."""
    monkeypatch.setattr(select, "_policy", [algo])
    calls = []
    from backends.numba.conv import drivers

    monkeypatch.setattr(drivers, "nchwc_weight_grad", lambda *a, **k: calls.append(1) or weight_grad_nchw(*a, **k))
    x = np.maximum(rng.standard_normal((3, 40, 7, 6)), 0).astype(np.float32).transpose(0, 1, 3, 2)[:, ::2]
    gy = rng.standard_normal((3, 18, 6, 7)).astype(np.float32)
    attrs = _attrs(1)
    (ref,) = run_kernel("numpy", "conv2d_weight_grad", [x.astype(np.float64), gy.astype(np.float64)],
                        weight_shape=(18, 20, 3, 3), **attrs)
    (got,) = run_kernel("numba", "conv2d_weight_grad", [x, gy], weight_shape=(18, 20, 3, 3), **attrs)
    assert calls
    assert _rel(got, ref) < TOL[int(algo[-1])]


def test_bad_inputs_name_the_constraint(rng):
    xb = np.zeros((2, 1, 5, 5, VL), np.float32)
    gyb = np.zeros((2, 1, 5, 5, VL), np.float32)
    with pytest.raises(ValueError, match="m must be 2 or 4"):
        weight_grad3x3(xb, gyb, np.empty((4, 3, 3, 3), np.float32), 1, 3)
    with pytest.raises(ValueError, match=r"needs x .* and gy \(2, 1, 5, 5"):
        weight_grad3x3(xb, gyb[:, :, :4], np.empty((4, 3, 3, 3), np.float32), 1, 2)
    with pytest.raises(TypeError, match="float32 only"):
        weight_grad3x3(xb, gyb, np.empty((4, 3, 3, 3)), 1, 2)
