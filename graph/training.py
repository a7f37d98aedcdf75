"""Training graphs: the forward and backward of a model as graphs, joined to eager autograd by one primitive.

``trace_joint`` traces the forward and, in the same trace, the backward pass that :func:`engine.autograd.grad`
builds from the primitives' vjp rules (no derivative is defined twice): one *joint* graph whose nodes carry
``meta["phase"]`` "forward" or "backward", inputs ``(*xs, *cotangents, params, buffers, keys)`` and outputs
``(*outputs, *gradients, *state updates)``. ``split_joint`` partitions it as AOTAutograd does: the forward graph
also returns the values the backward reads ("saved"), the backward graph takes ``(*cotangents, *saved,
*primal inputs it reads)`` and returns the gradients.

``call_graph`` is the primitive that runs a compiled graph (a :class:`GraphFunction`): its kernel is the graph's
executor and its vjp calls the backward graph's function, so eager autograd (``loss.backward()``) flows through
a compiled module and fills the ``.grad`` of the model's own parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from engine import autograd
from engine.autograd import bind
from engine.ops.call import call_graph_p
from engine.primitive import Cost, Spec
from engine.tensor import Tensor

from .executor import Executor
from .ir import Graph, Node, Value
from .trace import trace


class GraphFunction:
    """A graph with its executor, callable as one ``call_graph`` primitive (engine/ops/call.py). Its inputs are the
    graph's runtime inputs followed by its params/buffers (in graph order); its outputs are the graph's outputs.
    ``vjp(gs, outs, inputs)``, when set, gives the gradients of the inputs."""

    def __init__(self, graph: Graph, executor: Executor):
        self.graph = graph
        self.executor = executor
        self.n_user = len(graph.user_inputs)
        state = [v for v in graph.inputs if v.kind in ("param", "buffer")]
        self.in_specs = tuple(v.spec for v in graph.user_inputs) + tuple(v.spec for v in state)
        self.out_specs = tuple(v.spec for v in graph.outputs)
        self.vjp: Callable[[tuple, tuple, tuple], tuple] | None = None

    def __call__(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        return bind(call_graph_p, *inputs, fn=self)

    def run(self, arrays: Sequence[np.ndarray], out: Sequence[np.ndarray]) -> None:
        """The kernel: runtime inputs, then the live params/buffers; outputs written into ``out``."""
        self.executor.run(*arrays[:self.n_user], state=arrays[self.n_user:], outs=out)

    def cost(self) -> Cost:
        total = Cost()
        for n in self.graph.nodes:
            total = total + n.cost()
        return total

    def __repr__(self) -> str:
        return f"GraphFunction({self.graph!r})"


# --- the joint graph -------------------------------------------------------------------------------------------
def flatten_outputs(out: Any) -> list[Tensor]:
    return [out] if isinstance(out, Tensor) else list(out)


def differentiable(t: Tensor) -> bool:
    return t.dtype.kind == "f" and t.requires_grad


def trace_joint(model: Any, specs: Sequence[Spec], params: Sequence[Tensor]) -> tuple[Graph, list[int], int]:
    """Trace ``model(*specs)`` and its backward into one graph (see the module docstring). Returns the graph, the
    indices (into ``params``) of the parameters that got a gradient, and the number of model outputs."""
    with autograd.no_grad(), autograd.abstract():  # output specs, for the cotangent inputs (no side effects)
        out = model(*(Tensor._make(None, s) for s in specs))
    structure = "single" if isinstance(out, Tensor) else type(out).__name__
    probe = flatten_outputs(out)
    n_in = len(specs)
    got: list[int] = []
    n_out = len(probe)

    def joint(*args: Tensor) -> tuple[Tensor, ...]:
        outs = flatten_outputs(model(*args[:n_in]))
        diff = [(o, ct) for o, ct in zip(outs, args[n_in:]) if differentiable(o)]
        grads: tuple = (None,) * len(params)
        if diff:
            grads = autograd.grad([o for o, _ in diff], list(params), [ct for _, ct in diff])
        got.extend(i for i, g in enumerate(grads) if g is not None)
        return (*outs, *(g for g in grads if g is not None))

    ct_specs = [o.spec for o in probe]
    names = [f"x{i}" if n_in > 1 else "x" for i in range(n_in)] + [f"grad_out{i}" for i in range(n_out)]
    g = trace(joint, *specs, *ct_specs, abstract=True, grad=True, module=model, input_names=names)
    g.meta.update(output_structure=structure, joint=True)
    return g, got, n_out


def extract(graph: Graph, nodes: Sequence[Node], inputs: Sequence[tuple[Value, str]], outputs: Sequence[Value],
            meta: dict[str, Any]) -> Graph:
    """A new graph of ``nodes`` (in order) reading ``inputs`` (each given the kind named beside it) and returning
    ``outputs``; names, attrs and node meta are kept."""
    g = Graph()
    g.meta.update(meta)
    vmap: dict[int, Value] = {}
    for v, kind in inputs:
        nv = g.add_input(v.name, v.spec, kind, v.data if kind != "input" else None)
        nv.meta.update(v.meta)
        vmap[id(v)] = nv
    for n in nodes:
        nn = g.create_node(n.op, [vmap[id(v)] for v in n.inputs], n.attrs, name=n.name, meta=dict(n.meta),
                           out_specs=[o.spec for o in n.outputs], out_names=[o.name for o in n.outputs])
        for o, no in zip(n.outputs, nn.outputs):
            vmap[id(o)] = no
    g.outputs = [vmap[id(v)] for v in outputs]
    return g


class Split:
    """The two halves of a joint graph and how they connect (all lists index the halves' inputs/outputs)."""

    def __init__(self, forward: Graph, backward: Graph, n_out: int, n_state: int, n_saved: int,
                 ct_outputs: list[int], primal_inputs: list[int], grad_inputs: list[int]):
        self.forward, self.backward = forward, backward
        self.n_out, self.n_state, self.n_saved = n_out, n_state, n_saved
        self.ct_outputs = ct_outputs  # forward outputs that get a cotangent, in backward-input order
        self.primal_inputs = primal_inputs  # forward-function inputs the backward reads, in its input order
        self.grad_inputs = grad_inputs  # forward-function input receiving each backward output


def split_joint(joint: Graph, n_in: int, n_out: int, grad_of: Sequence[Value]) -> Split:
    """Partition a joint graph (``trace_joint``'s, after passes) into forward and backward graphs. ``grad_of[k]`` is
    the joint-graph input whose gradient is joint output ``n_out + k``."""
    fwd = [n for n in joint.nodes if n.meta.get("phase", "forward") == "forward"]
    bwd = [n for n in joint.nodes if n.meta.get("phase") == "backward"]
    fwd_ids = {id(n) for n in fwd}
    user = joint.user_inputs
    xs, cts = user[:n_in], user[n_in:]
    grads = joint.outputs[n_out:n_out + len(grad_of)]
    state_outs = joint.outputs[n_out + len(grad_of):]
    for v in state_outs + joint.outputs[:n_out]:
        if v.producer is not None and id(v.producer) not in fwd_ids:
            raise ValueError(f"split_joint: output %{v.name} is computed in the backward phase")
    # what the backward reads from the forward: intermediates (saved) and forward inputs (primal)
    saved: dict[int, Value] = {}
    primal: dict[int, Value] = {}
    consts: dict[int, Value] = {}
    ct_ids = {id(v) for v in cts}
    for v in [v for n in bwd for v in n.inputs] + list(grads):
        if v.producer is not None:
            if id(v.producer) in fwd_ids:
                saved.setdefault(id(v), v)
        elif v.kind == "const":
            consts.setdefault(id(v), v)
        elif id(v) not in ct_ids:
            primal.setdefault(id(v), v)
    f_inputs = [v for v in joint.inputs if id(v) not in ct_ids]
    forward = extract(joint, fwd, [(v, v.kind) for v in f_inputs],
                      list(joint.outputs[:n_out]) + list(state_outs) + list(saved.values()),
                      dict(joint.meta, part="forward", n_outputs=n_out))
    # the primitive's inputs are the forward graph's runtime inputs, then its params/buffers
    call_order = [v for v in f_inputs if v.kind == "input"] + [v for v in f_inputs if v.kind in ("param", "buffer")]
    pos = {id(v): i for i, v in enumerate(call_order)}
    for v in primal.values():
        if id(v) not in pos:
            raise ValueError(f"split_joint: the backward reads %{v.name} ({v.kind}), which the forward function "
                             f"does not take as an input")
    used_cts = [(i, v) for i, v in enumerate(cts) if v.users]
    backward = extract(joint, bwd, [(v, "input") for _, v in used_cts] + [(v, "input") for v in saved.values()]
                       + [(v, "input") for v in primal.values()] + [(v, "const") for v in consts.values()],
                       list(grads), dict(joint.meta, part="backward", n_outputs=len(grads), state_outputs=[]))
    del xs
    return Split(forward, backward, n_out, len(state_outs), len(saved), [i for i, _ in used_cts],
                 [pos[id(v)] for v in primal.values()], [pos[id(v)] for v in grad_of])


def make_vjp(split: Split, backward_fn: GraphFunction) -> Callable[[tuple, tuple, tuple], tuple]:
    """The vjp of the forward ``call_graph``: cotangents of the model outputs (zeros where none arrived), the saved
    outputs and the primal inputs go to the backward function; its gradients land on their inputs."""
    first_saved = split.n_out + split.n_state

    def vjp(gs: tuple, outs: tuple, inputs: tuple) -> tuple:
        cts = [gs[i] if gs[i] is not None else outs[i].new_tensor(np.zeros(outs[i].shape, outs[i].dtype))
               for i in split.ct_outputs]
        grads = backward_fn(*cts, *outs[first_saved:], *(inputs[i] for i in split.primal_inputs))
        result: list[Any] = [None] * len(inputs)
        for i, g in zip(split.grad_inputs, grads):
            result[i] = g if result[i] is None else result[i] + g
        return tuple(result)

    return vjp
