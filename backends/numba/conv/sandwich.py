"""Winograd transforms as vector code: ``Y = L D L^T`` over a grid of VL-lane float32 vectors, one LLVM vector op per
term (llvmlite, through the blocked kernels' vector helpers), for transforms whose every lane is its own channel:
the weight gradient's (:mod:`.nchwc_wgrad`) and the kernel transform U = G w G^T (:mod:`.winograd.math`)."""

from __future__ import annotations

import numpy as np
from numba import types
from numba.extending import intrinsic

from ..blocked.transforms import _Vec


def make_sandwich(left: np.ndarray):
    """An intrinsic ``f(src, rs, cs, dst, ds)``: Y = L D L^T for L = ``left`` (p x r) and the r x r grid of
    VL-vectors D[i][j] at src + i*rs + j*cs elements, Y[p][q] stored at dst + (p*len(left) + q)*ds (float32,
    addresses in bytes): one vector op per combination, like the blocked forward's input and output tiles."""
    left = tuple(tuple(float(v) for v in row) for row in np.asarray(left))
    n, r = len(left), len(left[0])

    @intrinsic
    def sandwich(typingctx, src, rs, cs, dst, ds):
        sig = types.void(types.uintp, types.intp, types.intp, types.uintp, types.intp)

        def codegen(context, builder, signature, args):
            src, rs, cs, dst, ds = args
            v = _Vec(builder)
            sp, dp = v.ptr(src), v.ptr(dst)
            d = [[v.load(sp, builder.add(v.off(rs, i), v.off(cs, j))) for j in range(r)] for i in range(r)]
            y = v.sandwich(left, d)
            for p in range(n):
                for q in range(n):
                    builder.store(y[p][q], v.at(dp, v.off(ds, n * p + q)), align=4)
            return context.get_dummy_value()

        return sig, codegen

    return sandwich
