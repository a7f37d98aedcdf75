"""numba conv2d and both gradients, with one algorithm chosen per layer and role.

Modules: :mod:`.drivers` (the registered kernels: pick an algorithm, dispatch), :mod:`.select` (candidates,
heuristic, the opt-in measured choice), :mod:`.geometry`, :mod:`.workspace` (scratch memory and derived weights,
owned by an executor), :mod:`.epilogue`, one module per algorithm, and :mod:`.notes` (the compile report's
per-node note). This file imports nothing, so :mod:`..gemm` can use the epilogue and the workspace without a cycle;
``backends.numba`` imports the drivers and notes.

Algorithms:

- ``gemm-tables`` (:mod:`.tables`, float32): an implicit GEMM whose register tile reads x through two offset
  tables (output pixel -> input position, tap -> offset), so no im2col matrix is built and no col2im runs; the
  epilogue is applied as each block of output pixels moves to NCHW. The float32 default outside Winograd and
  stride-1 1x1 layers (1.2-4x faster than im2col + GEMM on every layer measured).
- ``gemm-planes`` (:mod:`.planes`, float32 forward, stride 1, groups 1): channel-major GEMM on padded planes, the
  output on a grid of the padded row width so that every im2col row is a contiguous stretch of the input; for few
  output channels and taps (LeNet conv1).
- ``im2col`` (:mod:`.im2col`; other dtypes, forcible for float32): a parallel im2col into ``cols (C*kh*kw,
  N*Ho*Wo)``, ONE GEMM for the whole batch, ``cols^T @ W^T`` (``im2col-pixel``) or ``W @ cols``
  (``im2col-channel``; plain ``im2col`` orients by :func:`.select.gemm_pixel_major`), then one parallel pass that
  moves the result into NCHW while applying the epilogue. Gradients: ``gW`` is one GEMM with K = N*Ho*Wo,
  ``gcols = W^T @ gy^T`` then a parallel col2im that gives each (n, c) input plane to one thread.
- ``gemm_1x1-nchw``: 1x1 stride-1 kernels without padding as one GEMM per image on the NCHW arrays themselves
  (``out[n] = W @ x[n]``, ``gx[n] = W^T @ gy[n]``, ``gW = sum_n gy[n] @ x[n]^T``): no packing at all.
- ``gemm_1x1``: 1x1 kernels without padding as a plain GEMM ``W (O, C) @ x (C, N*P)`` on x re-laid out
  channels-first (subsampled when strided).
- ``winograd-f2`` / ``winograd-f4`` (:mod:`.winograd`): 3x3 stride-1 layers as Winograd F(2x2, 3x3) or
  F(4x4, 3x3), a*a batched GEMMs between an input and an output transform (the output transform applies the
  epilogue); the input gradient is itself such a conv, the weight gradient runs a*a long-K GEMMs.
- ``nchwc-winograd-f2`` / ``nchwc-winograd-f4`` (float32): the same layers on channel-blocked Winograd kernels,
  forward and input gradient on ``..blocked.winograd`` between two reorders (:mod:`.nchwc`), the weight gradient
  by :mod:`.nchwc_wgrad` (blocked transforms, GEMMs on in-place panels, dW fused); the float32 pick.
- ``direct`` (:mod:`.direct`): direct loop nests for grouped / depthwise layers, and a candidate for layers with
  few input taps per output.

Every prange iteration writes a disjoint output slice (no races). Kernels keep no reference to their inputs or
outputs between calls.
"""
