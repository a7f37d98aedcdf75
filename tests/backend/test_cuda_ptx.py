"""Every production GEMM / conv kernel configuration of the cuda backend compiles to PTX for sm_80 and sm_90 (the
simulator does not type-check kernels), and ptxas finds no spill, no local memory beyond the staged result tile,
and no more registers than the tile's occupancy allows (the small float32 tile: two 256-thread blocks per SM).

Runs in the normal test process: compilation needs NVVM (numba-cuda[cu13]), not a GPU. ptxas comes from nvJitLink
of the same CUDA release (backends/cuda/ptx.py); where no assembler accepts the PTX the resource check is skipped.
"""

from __future__ import annotations

import os

import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    pytest.skip("PTX compilation needs numba's real CUDA target, not the simulator", allow_module_level=True)

from backends.cuda.production import production_kernels  # noqa: E402
from backends.cuda.ptx import (  # noqa: E402
    Resources,
    ResourcesUnavailable,
    compile_ptx,
    kernel_resources,
    parse_ptxas_log,
    ptx_isa,
)

CCS = ((8, 0), (9, 0))
CONFIGS = {cfg.name: cfg for cfg in production_kernels()}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_kernel_compiles_without_spills(name: str) -> None:
    cfg = CONFIGS[name]
    ptxs = compile_ptx(cfg.kernel.py_func, cfg.signature, CCS)
    for (major, minor), ptx in ptxs.items():
        arch = f"sm_{major}{minor}"
        assert f".target {arch}" in ptx and ".entry" in ptx, f"{name}: no {arch} kernel entry in its PTX"
        try:
            r = kernel_resources(ptx, arch)
        except ResourcesUnavailable as e:
            pytest.skip(f"no assembler for PTX ISA {ptx_isa(ptx)}: {e}")
        assert not r.spills, f"{name} on {arch} spills registers: {r}"
        assert r.registers <= cfg.max_registers, f"{name} on {arch}: {r.registers} registers per thread, more " \
                                                 f"than the {cfg.max_registers} its occupancy needs: {r}"
        assert r.stack <= cfg.stack_bytes, f"{name} on {arch} uses {r.stack} B of local memory, expected " \
                                           f"<= {cfg.stack_bytes} B (the accumulators left registers?): {r}"


def test_parse_ptxas_log_reads_spills() -> None:
    """The parser sees a spill where ptxas reports one (a kernel without spills cannot show that it would fail)."""
    log = ("ptxas info    : Compiling entry function 'k' for 'sm_90'\n"
           "ptxas         .     24 bytes stack frame, 16 bytes spill stores, 8 bytes spill loads\n"
           "ptxas info    : Used 255 registers, used 1 barriers, 9472 bytes smem, 892 bytes cmem[0]\n")
    r = parse_ptxas_log(log, "sm_90", "ptxas")
    assert r == Resources("sm_90", 255, 16, 8, 24, 9472, "ptxas") and r.spills
