"""Configuration: ``import engine`` leaves numpy's BLAS kernels as it found them, and docs/configuration.md names
every ``CONVGRAPH_*`` environment variable the code reads."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Starts numpy's OpenBLAS on its AVX2 kernels (as on a CPU newer than the library), imports the engine, then asks
# for the AVX-512 switch explicitly.
_PROBE = r"""
import ctypes, json, os
import numpy
from threadpoolctl import threadpool_info

libs = []
for info in threadpool_info():
    if info.get("internal_api") == "openblas":
        lib = ctypes.CDLL(info["filepath"])
        if all(hasattr(lib, s) for s in ("gotoblas_corename", "gotoblas_dynamic_quit", "gotoblas_dynamic_init")):
            lib.gotoblas_corename.restype = ctypes.c_char_p
            libs.append(lib)
for lib in libs:
    os.environ["OPENBLAS_CORETYPE"] = "Haswell"
    lib.gotoblas_dynamic_quit()
    lib.gotoblas_dynamic_init()
    del os.environ["OPENBLAS_CORETYPE"]
corenames = lambda: [lib.gotoblas_corename().decode() for lib in libs]
before = corenames()
import engine
after = corenames()
engine.tune_openblas(avx512=True)
from numpy._core._multiarray_umath import __cpu_features__
print(json.dumps({"before": before, "after": after, "opted_in": corenames(),
                  "avx512": bool(__cpu_features__.get("AVX512_SKX")), "described": engine.blas_description()}))
"""


def test_import_engine_keeps_the_blas_kernel_set_and_the_switch_is_opt_in():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONVGRAPH_", "OPENBLAS_"))}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["after"] == res["before"]
    if res["before"] and res["avx512"]:  # a DYNAMIC_ARCH OpenBLAS on an AVX-512 CPU: the explicit call switches
        assert set(res["before"]) == {"Haswell"} and set(res["opted_in"]) == {"SkylakeX"}
        assert "SkylakeX kernels (was Haswell)" in res["described"]


def test_every_convgraph_variable_is_documented():
    doc = (ROOT / "docs" / "configuration.md").read_text()
    used = set()
    for folder in ("engine", "graph", "backends", "zoo", "tests", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            used |= set(re.findall(r"CONVGRAPH_[A-Z0-9_]+", path.read_text()))
    assert used, "no CONVGRAPH_ variable found: the scan is broken"
    missing = sorted(v for v in used if f"`{v}`" not in doc)
    assert not missing, f"docs/configuration.md does not document {missing}"


_OMP_PROBE = "import json, os, engine; print(json.dumps([os.environ.get(k) for k in ('OMP_WAIT_POLICY', " \
             "'GOMP_SPINCOUNT')] + [engine.ENV_SET]))"


def test_import_engine_sets_briefly_spinning_openmp_workers_unless_the_environment_says_otherwise():
    """Workers spin ~0.5 ms after a parallel region, then sleep (passive: a worker spinning for milliseconds loses
    its core to other processes and every later region waits for it); a value already in the environment wins and
    is not reported as set by the engine."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env["PYTHONPATH"] = str(ROOT)
    run = lambda e: json.loads(subprocess.run([sys.executable, "-c", _OMP_PROBE], env=e, capture_output=True,  # noqa: E731
                                              text=True, check=True).stdout.strip().splitlines()[-1])
    assert run(env) == ["passive", "10000", {"OMP_WAIT_POLICY": "passive", "GOMP_SPINCOUNT": "10000"}]
    assert run(dict(env, GOMP_SPINCOUNT="20000")) == ["passive", "20000", {"OMP_WAIT_POLICY": "passive"}]
