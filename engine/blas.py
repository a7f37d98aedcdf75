"""Tuning numpy's OpenBLAS for this engine's workload: every conv and linear layer is a numpy GEMM, on both
backends.

Two settings, applied once when the engine is imported (opt out with ``CONVGRAPH_TUNE_BLAS=0``; an explicit
``OPENBLAS_CORETYPE`` / ``OPENBLAS_THREAD_TIMEOUT`` in the environment always wins):

- **AVX-512 kernels on CPUs this OpenBLAS does not recognise.** A ``DYNAMIC_ARCH`` OpenBLAS picks its kernel set
  by CPU model; on a CPU newer than the library (measured here: AMD family 26, Zen 5) it falls back to the AVX2
  ``Haswell`` kernels although the CPU has AVX-512. When the CPU has the Skylake-X AVX-512 subset (F, CD, BW, DQ,
  VL) and the chosen kernels are not an AVX-512 set, switch to ``SkylakeX`` (OpenBLAS's own runtime selection,
  redone with ``OPENBLAS_CORETYPE``). Measured on that machine: 1024^3 SGEMM 243 -> 461 GFLOP/s.
- **Short spin after a BLAS call.** OpenBLAS workers busy-wait for 2^28 cycles (~70 ms) after each GEMM. The
  numba kernels that follow (im2col, epilogues, pooling, batch norm) then share the cores with spinning threads
  and ran at half speed (im2col 4.7 -> 2.5 ms at 56x56x64 batch 8 with the timeout at its minimum, 2^4 cycles).

Both go through symbols a ``DYNAMIC_ARCH`` OpenBLAS exports (``gotoblas_dynamic_quit/init``,
``openblas_read_env``, ``blas_thread_shutdown_``); a BLAS without them (MKL, a static-arch build) is left alone.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

AVX512_CORES = frozenset({"SkylakeX", "Cooperlake", "SapphireRapids"})
SPIN_TIMEOUT = "4"  # log2 cycles; OpenBLAS clamps to 4..30


@dataclass(frozen=True)
class BlasState:
    """What :func:`tune_openblas` found and did, for reports."""

    library: str
    version: str
    corename_before: str
    corename: str
    thread_timeout: str

    def describe(self) -> str:
        switched = f" (was {self.corename_before})" if self.corename != self.corename_before else ""
        return f"OpenBLAS {self.version}, {self.corename} kernels{switched}, spin 2^{self.thread_timeout} cycles"


_STATE: list[BlasState] = []


def _cpu_has_avx512_skx() -> bool:
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:  # numpy < 2
        from numpy.core._multiarray_umath import __cpu_features__
    return bool(__cpu_features__.get("AVX512_SKX", False))


def _openblas_libraries() -> list[dict]:
    from threadpoolctl import threadpool_info

    return [d for d in threadpool_info() if d.get("internal_api") == "openblas"]


def _corename(lib: ctypes.CDLL) -> str:
    lib.gotoblas_corename.restype = ctypes.c_char_p
    return lib.gotoblas_corename().decode()


def _set_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def _retune(lib: ctypes.CDLL, coretype: str | None, timeout: str | None) -> None:
    """Redo OpenBLAS's start-up with these environment values, then put the environment back."""
    saved = {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_THREAD_TIMEOUT")}
    try:
        if coretype is not None:
            _set_env("OPENBLAS_CORETYPE", coretype)
        if timeout is not None:
            _set_env("OPENBLAS_THREAD_TIMEOUT", timeout)
        lib.openblas_read_env()
        lib.blas_thread_shutdown_()  # workers restart on the next call and read the new timeout
        if coretype is not None:
            lib.gotoblas_dynamic_quit()
            lib.gotoblas_dynamic_init()
    finally:
        for k, v in saved.items():
            _set_env(k, v)


def tune_openblas() -> list[BlasState]:
    """Apply the two settings above to every OpenBLAS loaded in this process (numpy's); idempotent."""
    if _STATE or os.environ.get("CONVGRAPH_TUNE_BLAS", "1") == "0":
        return list(_STATE)
    needed = ("gotoblas_corename", "gotoblas_dynamic_quit", "gotoblas_dynamic_init", "openblas_read_env",
              "blas_thread_shutdown_")
    for info in _openblas_libraries():
        lib = ctypes.CDLL(info["filepath"])
        if not all(hasattr(lib, s) for s in needed):
            continue
        before = _corename(lib)
        coretype = None
        if "OPENBLAS_CORETYPE" not in os.environ and before not in AVX512_CORES and _cpu_has_avx512_skx():
            coretype = "SkylakeX"
        timeout = None if "OPENBLAS_THREAD_TIMEOUT" in os.environ else SPIN_TIMEOUT
        _retune(lib, coretype, timeout)
        if coretype is not None and _corename(lib) != coretype:  # not available in this build: undo
            _retune(lib, before, None)
        _STATE.append(BlasState(info["filepath"], info.get("version") or "?", before, _corename(lib),
                                os.environ.get("OPENBLAS_THREAD_TIMEOUT", timeout or "28")))
    return list(_STATE)


def blas_description() -> str:
    """One line for report headers: which BLAS kernels the GEMMs run on."""
    states = tune_openblas()
    return "; ".join(s.describe() for s in states) if states else "BLAS not tuned (not a DYNAMIC_ARCH OpenBLAS)"
