"""Benchmark workloads and runners, installed with the package so ``convgraph bench`` works outside a checkout.

``models``: the model-level workloads (``convgraph bench``); ``workloads`` + ``report``: the op-level conv table;
``jit_cost``: cold/warm JIT cost of the numba kernel set. The pytest-benchmark suites in the repository's bench/
folder time the same workloads.
"""
