"""JIT cost of the numba kernel set a ResNet-18 forward+backward needs, cold and warm.

Each measurement runs in a fresh Python process with ``NUMBA_CACHE_DIR`` pointing at one temporary directory:
the first process starts from an empty cache (cold: every kernel compiles and is written to the cache), the
second finds the cache filled (warm: kernels load from disk). JIT cost = import time plus the time of the first
training step minus the time of a steady-state step, in the same process. The model is ResNet-18 with its real
layer shapes (channels, kernels, strides, BN, residuals, max pool, global average pool, linear, cross-entropy) on a
small 2x3x64x64 input, so compile cost dominates and kernel time stays small.

    python -m zoo.bench.jit_cost
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
sys.path.insert(0, {root!r})
import numpy as np
import engine
import engine.functional as F
import backends.numba  # noqa: F401
engine.set_backend("numba")
t_import = time.perf_counter() - t0
rng = np.random.default_rng(0)

def param(*shape):
    return engine.Tensor((rng.standard_normal(shape) * 0.05).astype(np.float32), requires_grad=True)

def bn(c):
    return param(c), param(c)

def block(cin, cout, stride):
    p = dict(c1=param(cout, cin, 3, 3), b1=bn(cout), c2=param(cout, cout, 3, 3), b2=bn(cout), stride=stride)
    if stride != 1 or cin != cout:
        p["down"] = (param(cout, cin, 1, 1), bn(cout))
    return p

stem, stem_bn = param(64, 3, 7, 7), bn(64)
blocks = [block(64, 64, 1), block(64, 64, 1), block(64, 128, 2), block(128, 128, 1), block(128, 256, 2),
          block(256, 256, 1), block(256, 512, 2), block(512, 512, 1)]
fc_w, fc_b = param(10, 512), param(10)

def bnorm(x, wb):
    return F.batch_norm(x, None, None, wb[0], wb[1], training=True)

def forward(x):
    h = F.max_pool2d(F.relu(bnorm(F.conv2d(x, stem, stride=2, padding=3), stem_bn)), 3, 2, 1)
    for p in blocks:
        out = F.relu(bnorm(F.conv2d(h, p["c1"], stride=p["stride"], padding=1), p["b1"]))
        out = bnorm(F.conv2d(out, p["c2"], padding=1), p["b2"])
        sc = bnorm(F.conv2d(h, p["down"][0], stride=p["stride"]), p["down"][1]) if "down" in p else h
        h = F.relu(out + sc)
    return F.linear(F.flatten(F.adaptive_avg_pool2d(h, (1, 1)), 1), fc_w, fc_b)

x = engine.Tensor(rng.standard_normal((2, 3, 64, 64)).astype(np.float32))
y = np.array([1, 7])
times = []
for _ in range(3):
    t = time.perf_counter()
    F.cross_entropy(forward(x), y).backward()
    times.append(time.perf_counter() - t)
print(json.dumps({{"import_s": t_import, "first_step_s": times[0], "step_s": min(times[1:])}}))
"""


def _child(cache_dir: str) -> dict:
    import engine

    root = os.path.dirname(os.path.dirname(os.path.abspath(engine.__file__)))  # the engine this process runs
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    out = subprocess.run([sys.executable, "-c", _CHILD.format(root=root)], env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure() -> dict:
    with tempfile.TemporaryDirectory(prefix="convgraph-jit-") as cache:
        t = time.perf_counter()
        cold = _child(cache)
        cold_wall = time.perf_counter() - t
        t = time.perf_counter()
        warm = _child(cache)
        warm_wall = time.perf_counter() - t
    # import counts: the GEMM kernel (explicit signature) compiles or loads from the cache at import
    return {"cold_s": cold["import_s"] + cold["first_step_s"] - cold["step_s"],
            "warm_s": warm["import_s"] + warm["first_step_s"] - warm["step_s"],
            "step_s": warm["step_s"], "cold_process_wall_s": cold_wall, "warm_process_wall_s": warm_wall,
            "cold": cold, "warm": warm}


def main() -> None:
    r = measure()
    print(json.dumps(r, indent=1))
    print(f"ResNet-18 fwd+bwd kernel set: cold JIT {r['cold_s']:.1f} s, warm start {r['warm_s']:.2f} s "
          f"(process wall: cold {r['cold_process_wall_s']:.1f} s, warm {r['warm_process_wall_s']:.1f} s)")


if __name__ == "__main__":
    main()
