"""convgraph graph compiler: IR, tracer, passes, memory planning, executor and ``compile()``.

    g = graph.trace(model, x)                # Graph IR (str(g) prints it, g.verify() checks it)
    cm = graph.compile(model, x)             # CompiledModule, callable like the model
    cm.report, cm.graph, cm.render("m.svg")
"""

from .compile import CompiledModule, compile  # noqa: A004 - the documented name
from .executor import ArenaExecutor, Executor, run_graph
from .ir import FROZEN_KINDS, INPUT_KINDS, Graph, GraphError, Node, Value
from .memory import MemoryPlan, plan_memory
from .passes import PIPELINES, PassResult, run_passes
from .remat import BudgetError, rematerialize
from .step import CompiledStep, compile_step
from .trace import TracerWarning, trace

__all__ = ["Graph", "Node", "Value", "GraphError", "INPUT_KINDS", "FROZEN_KINDS", "trace", "Executor",
           "ArenaExecutor", "run_graph", "PassResult", "PIPELINES", "run_passes", "MemoryPlan", "plan_memory",
           "CompiledModule", "compile", "CompiledStep", "compile_step", "TracerWarning", "BudgetError", "rematerialize"]


def __getattr__(name: str):
    # written by another module owner; imported lazily so graph works before/without them
    if name in ("summary", "render", "bottleneck"):
        import importlib

        mod = importlib.import_module(f".{name}", __name__)
        return getattr(mod, name, mod)
    raise AttributeError(f"module 'graph' has no attribute {name!r}")
