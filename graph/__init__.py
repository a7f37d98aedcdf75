"""convgraph graph compiler: IR, tracer, passes, memory planning, executor and ``compile()``.

    g = graph.trace(model, x)                # Graph IR (str(g) prints it, g.verify() checks it)
    cm = graph.compile(model, x)             # CompiledModule, callable like the model
    cm.report, cm.graph, cm.render("m.svg")
    graph.summary(model, (3, 224, 224)), graph.render(g, "g.svg"), graph.bottleneck(model, (3, 224, 224))

``graph.summary``, ``graph.render`` and ``graph.bottleneck`` are the functions (they shadow their modules as
package attributes); import a module's other names from it: ``from graph.summary import SummaryRow``.
"""

from .bottleneck import bottleneck
from .compile import CompiledModule, compile  # noqa: A004 - the documented name
from .executor import ArenaExecutor, Executor, run_graph
from .ir import FROZEN_KINDS, INPUT_KINDS, Graph, GraphError, Node, Value
from .memory import MemoryPlan, plan_memory
from .passes import PIPELINES, PassResult, run_passes
from .remat import BudgetError, rematerialize
from .render import render
from .step import CompiledStep, compile_step
from .summary import summary
from .trace import TracerWarning, trace

__all__ = ["Graph", "Node", "Value", "GraphError", "INPUT_KINDS", "FROZEN_KINDS", "trace", "Executor",
           "ArenaExecutor", "run_graph", "PassResult", "PIPELINES", "run_passes", "MemoryPlan", "plan_memory",
           "CompiledModule", "compile", "summary", "render", "bottleneck", "CompiledStep", "compile_step",
           "TracerWarning", "BudgetError", "rematerialize"]
