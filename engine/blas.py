"""Tuning numpy's OpenBLAS for this engine's workload: every conv and linear layer is a numpy GEMM, on both
backends. See docs/configuration.md for the switches.

- **Short spin after a BLAS call** (on by default, performance only: results are unchanged). OpenBLAS workers
  busy-wait for 2^28 cycles (~70 ms) after each GEMM; the numba kernels that follow (im2col, epilogues, pooling,
  batch norm) then share the cores with spinning threads and run at about half speed. :func:`tune_openblas`
  shortens the spin to 2^4 cycles. Applied when the engine is imported unless ``CONVGRAPH_TUNE_BLAS=0``; an
  explicit ``OPENBLAS_THREAD_TIMEOUT`` always wins.
- **AVX-512 kernels on CPUs this OpenBLAS does not recognise** (opt-in: ``tune_openblas(avx512=True)`` or
  ``CONVGRAPH_BLAS_AVX512=1``). A ``DYNAMIC_ARCH`` OpenBLAS picks its kernel set by CPU model; on a CPU newer than
  the library it falls back to the AVX2 ``Haswell`` kernels although the CPU has AVX-512. This switch redoes
  OpenBLAS's runtime selection with ``OPENBLAS_CORETYPE=SkylakeX`` when the CPU has the Skylake-X AVX-512 subset
  (F, CD, BW, DQ, VL). Other kernels round differently, so the switch changes numerics process-wide; and some
  OpenBLAS builds compute wrong results with a forced kernel set on some CPUs, which is why it is never automatic.
  An explicit ``OPENBLAS_CORETYPE`` always wins.

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


_STATE: dict[str, BlasState] = {}  # library path -> what tune_openblas last did to it
_NEEDED = ("gotoblas_corename", "gotoblas_dynamic_quit", "gotoblas_dynamic_init", "openblas_read_env",
           "blas_thread_shutdown_")


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


def _tunable() -> list[tuple[dict, ctypes.CDLL]]:
    """The OpenBLAS libraries loaded in this process (numpy's) that export the symbols the tuning needs."""
    out = []
    for info in _openblas_libraries():
        lib = ctypes.CDLL(info["filepath"])
        if all(hasattr(lib, s) for s in _NEEDED):
            out.append((info, lib))
    return out


def tune_openblas(avx512: bool = False) -> list[BlasState]:
    """Shorten the OpenBLAS worker spin and, with ``avx512=True``, switch to AVX-512 kernels where the CPU has them
    and OpenBLAS chose another set (see the module docstring). Applies to every tunable OpenBLAS in the process."""
    for info, lib in _tunable():
        before = _corename(lib)
        coretype = None
        if avx512 and "OPENBLAS_CORETYPE" not in os.environ and before not in AVX512_CORES and _cpu_has_avx512_skx():
            coretype = "SkylakeX"
        timeout = None if "OPENBLAS_THREAD_TIMEOUT" in os.environ else SPIN_TIMEOUT
        _retune(lib, coretype, timeout)
        if coretype is not None and _corename(lib) != coretype:  # not available in this build: undo
            _retune(lib, before, None)
        was = _STATE.get(info["filepath"])
        _STATE[info["filepath"]] = BlasState(info["filepath"], info.get("version") or "?",
                                             was.corename_before if was else before, _corename(lib),
                                             os.environ.get("OPENBLAS_THREAD_TIMEOUT", timeout or "28"))
    return list(_STATE.values())


def tune_openblas_from_env() -> list[BlasState]:
    """What ``import engine`` does: :func:`tune_openblas` unless ``CONVGRAPH_TUNE_BLAS=0``, with AVX-512 kernels
    only when ``CONVGRAPH_BLAS_AVX512=1``."""
    if os.environ.get("CONVGRAPH_TUNE_BLAS", "1") == "0":
        return []
    return tune_openblas(avx512=os.environ.get("CONVGRAPH_BLAS_AVX512", "0") == "1")


def blas_description() -> str:
    """One line for report headers: which BLAS kernels the GEMMs run on (changes nothing)."""
    states = []
    for info, lib in _tunable():
        known = _STATE.get(info["filepath"])
        states.append(known or BlasState(info["filepath"], info.get("version") or "?", _corename(lib), _corename(lib),
                                         os.environ.get("OPENBLAS_THREAD_TIMEOUT", "28")))
    return "; ".join(s.describe() for s in states) if states else "BLAS not tunable (not a DYNAMIC_ARCH OpenBLAS)"
