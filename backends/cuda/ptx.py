"""PTX compilation and ptxas resource usage of numba.cuda kernels, without a GPU (independent of convgraph).

:func:`compile_ptx` compiles a kernel's Python function for one signature and compute capability with NVVM (the
``nvidia-nvvm`` wheel numba-cuda[cu13] installs). :func:`kernel_resources` assembles that PTX to SASS and returns
what ptxas reports: registers per thread, local-memory spill stores/loads, stack frame, shared memory.

Which ptxas: the one inside nvJitLink (the ``nvidia-nvjitlink`` wheel, through ``cuda.core``'s ``Linker``), which
comes from the same CUDA release as NVVM and so accepts the PTX ISA version NVVM writes. A system ``ptxas`` is the
fallback and is only used when it accepts that version: e.g. CUDA 13.0's ptxas reads PTX ISA <= 9.0 while NVVM
13.5 writes ``.version 9.5``, and lowering the version line by hand would claim a compatibility nobody checked.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any


class ResourcesUnavailable(RuntimeError):
    """No assembler that accepts this PTX is installed."""


@dataclass(frozen=True)
class Resources:
    """ptxas's report for one kernel on one architecture (bytes per thread unless stated)."""

    arch: str
    registers: int
    spill_stores: int
    spill_loads: int
    stack: int
    shared: int  # static shared memory per block
    assembler: str

    @property
    def spills(self) -> bool:
        return self.spill_stores > 0 or self.spill_loads > 0


@contextlib.contextmanager
def _device_functions_for(cc: tuple[int, int]) -> Iterator[None]:
    """numba-cuda compiles the device functions a kernel calls for ``get_current_device()``'s compute capability,
    even inside ``compile_ptx(..., cc=...)``, which fails without a GPU: answer with ``cc`` while compiling. (The
    device functions' LLVM IR does not depend on it; NVVM compiles the linked kernel for ``cc``.)"""
    from numba.cuda import dispatcher

    real = dispatcher.get_current_device
    dispatcher.get_current_device = lambda: SimpleNamespace(compute_capability=cc)
    try:
        yield
    finally:
        dispatcher.get_current_device = real


def compile_ptx(pyfunc: Any, signature: Any, ccs: Sequence[tuple[int, int]]) -> dict[tuple[int, int], str]:
    """PTX of the kernel ``pyfunc`` (a plain function, e.g. ``dispatcher.py_func``) for ``signature``, per compute
    capability in ``ccs``. numba's front end (typing, lowering to LLVM IR) runs once and NVVM once per cc, through
    numba-cuda's internal ``_compile_pyfunc_with_fixup`` (what ``cuda.compile_ptx`` runs); where that is missing,
    ``cuda.compile_ptx`` per cc."""
    from numba.cuda import compiler

    ccs = list(ccs)
    with _device_functions_for(min(ccs)):
        fixup = getattr(compiler, "_compile_pyfunc_with_fixup", None)
        if fixup is None:
            return {cc: compiler.compile_ptx(pyfunc, signature, cc=cc)[0] for cc in ccs}
        lib, _ = fixup(pyfunc, signature, device=False, cc=min(ccs), abi="numba")
        out = {}
        for cc in ccs:
            (out[cc],) = lib.get_asm_strs(cc=cc)
        return out


def ptx_isa(ptx: str) -> str:
    m = re.search(r"^\.version\s+(\S+)", ptx, re.M)
    return m.group(1) if m else "?"


_STACK = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers")
_SMEM = re.compile(r"(\d+) bytes smem")


def parse_ptxas_log(log: str, arch: str, assembler: str) -> Resources:
    """The resources of the first kernel in a ``ptxas -v`` log."""
    stack, used = _STACK.search(log), _USED.search(log)
    if stack is None or used is None:
        raise ValueError(f"ptxas log has no resource report:\n{log}")
    smem = _SMEM.search(log)
    return Resources(arch, int(used.group(1)), int(stack.group(2)), int(stack.group(3)), int(stack.group(1)),
                     int(smem.group(1)) if smem else 0, assembler)


def _nvjitlink(ptx: str, arch: str) -> Resources:
    try:
        from cuda.core import Linker, LinkerOptions, ObjectCode
    except ImportError:
        from cuda.core.experimental import Linker, LinkerOptions, ObjectCode
    linker = Linker(ObjectCode.from_ptx(ptx.encode(), name="kernel"),
                    options=LinkerOptions(arch=arch, ptxas_options="-v", verbose=True))
    linker.link("cubin")
    return parse_ptxas_log(linker.get_info_log(), arch, "nvjitlink")


def _system_ptxas(ptx: str, arch: str) -> Resources:
    exe = shutil.which("ptxas")
    if exe is None:
        raise ResourcesUnavailable("neither nvJitLink (cuda.core + nvidia-nvjitlink) nor a ptxas binary is installed")
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "kernel.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        run = subprocess.run([exe, "-v", f"-arch={arch}", src, "-o", os.path.join(tmp, "kernel.cubin")],
                             capture_output=True, text=True)
    if run.returncode:
        raise ResourcesUnavailable(f"{exe} rejects PTX ISA {ptx_isa(ptx)}: {run.stderr.strip().splitlines()[0]}")
    return parse_ptxas_log(run.stderr + run.stdout, arch, exe)


def kernel_resources(ptx: str, arch: str) -> Resources:
    """Registers, spills, stack and shared memory of the (single) kernel in ``ptx`` on ``arch`` ("sm_80")."""
    try:
        return _nvjitlink(ptx, arch)
    except ImportError:
        return _system_ptxas(ptx, arch)
