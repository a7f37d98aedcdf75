"""call_graph (engine/ops/call.py): a compiled function called as one primitive runs its own executor, which
launches this backend's kernels on the device arrays it is handed."""

from engine.ops.call import call_graph_kernel

from .table import backend

backend.register("call_graph")(call_graph_kernel)
