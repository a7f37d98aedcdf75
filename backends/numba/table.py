"""The numba backend's kernel table, in a module of its own so kernel modules register into it without importing
the package (whose ``__init__`` imports them: that would be an import cycle)."""

# Importing engine (first) sets the OpenMP wait policy numba's threading layer starts with: engine/_env.py.
from engine.backend import Backend, register_backend

from .conv.workspace import NumbaContext

# executors keep a NumbaContext: their conv/GEMM workspace and the derived forms of their constant weights
backend = register_backend(Backend("numba", context_type=NumbaContext, jit=True))
