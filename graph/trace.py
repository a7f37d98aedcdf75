"""trace(model, *example_inputs) -> Graph: run the forward once with an observer on ``bind`` and record every
primitive call as a Node.

- Parameters and buffers become named graph inputs (``kind="param"`` / ``"buffer"``) holding their arrays, named
  by their state-dict path (``layer1.0.conv1.weight``), so passes can read and fold them.
- Any other tensor a primitive reads that was not produced inside the trace (a lifted scalar, a mask, a tensor
  the model created with ``engine.tensor``) becomes a ``"const"`` input holding its array.
- ``node.meta["module"]`` is the dotted path of the innermost module running when the primitive was bound
  (``""`` for the root), from :func:`engine.autograd.current_modules`.
- Python control flow simply unrolls: only primitive calls are recorded, the Python around them is not.
- ``abstract=True`` runs shape rules only (no kernels), so tracing a large model costs no kernel time.
- Effects are explicit: each ``rng_key`` the model draws (dropout) becomes a graph input of kind ``"key"`` that
  the executor draws afresh per call; each state update (BatchNorm running statistics, ``num_batches_tracked``)
  becomes a graph output named in ``graph.meta["state_outputs"]`` instead of a write to the buffer. Tracing
  changes neither the model nor the engine's random generator.
- ``grad=True`` records with autograd on, so a function that calls :func:`engine.autograd.grad` records its
  backward pass too; every node's ``meta["phase"]`` says whether it was bound in the forward or backward pass.
- Python reading a traced value (``bool()``, ``item()``, ``float()``, an index) bakes the value it had at trace
  time into the graph: a :class:`TracerWarning` names the line that did it.
"""

from __future__ import annotations

import inspect
import os
import traceback
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from engine import autograd
from engine import random as _random
from engine.backend import to_host
from engine.ops.random import rng_key_p
from engine.primitive import Primitive, Spec
from engine.tensor import Tensor

from .ir import Graph, Value


def _as_tensor(x: Any, abstract: bool) -> Tensor:
    if isinstance(x, Spec):
        return Tensor._make(None, x)
    if isinstance(x, Tensor):
        return Tensor._make(None, x.spec) if abstract else x.detach()
    arr = np.asarray(x)
    if arr.dtype == np.float64 and not isinstance(x, np.ndarray):
        arr = arr.astype(np.float32)
    return Tensor._make(None, Spec(arr.shape, arr.dtype)) if abstract else Tensor(arr)


def _input_names(fn: Callable, n: int) -> list[str]:
    try:
        target = fn.forward if hasattr(fn, "forward") else fn
        params = [p.name for p in inspect.signature(target).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    if len(params) >= n:
        return params[:n]
    return ["x"] if n == 1 else [f"x{i}" for i in range(n)]


def _named_state(model: Any) -> tuple[dict[int, tuple[str, str, Tensor]], dict[int, str]]:
    """id(tensor) -> (name, kind, tensor) for parameters and buffers; id(module) -> dotted path."""
    state: dict[int, tuple[str, str, Tensor]] = {}
    modules: dict[int, str] = {}
    if hasattr(model, "named_modules"):
        modules = {id(m): name for name, m in model.named_modules()}
    for attr, kind in (("named_parameters", "param"), ("named_buffers", "buffer")):
        if hasattr(model, attr):
            for name, t in getattr(model, attr)():
                if t is not None:
                    state.setdefault(id(t), (name, kind, t))
    return state, modules


def _flatten(out: Any) -> tuple[list[Tensor], str]:
    if isinstance(out, Tensor):
        return [out], "single"
    if isinstance(out, (tuple, list)) and all(isinstance(t, Tensor) for t in out):
        return list(out), type(out).__name__
    raise TypeError(f"trace: the model must return a Tensor or a tuple/list of Tensors (got {type(out).__name__})")


class TracerWarning(UserWarning):
    """Python read a traced tensor's value; the control flow that depended on it is baked into the graph."""


# frames in these packages are the engine's and the tracer's own, not the user's code
_ENGINE_DIRS = (os.path.dirname(os.path.abspath(autograd.__file__)) + os.sep,
                os.path.dirname(os.path.abspath(__file__)) + os.sep)


def _user_frame() -> str:
    """``file:line`` of the innermost stack frame outside the engine and graph packages."""
    for fr in reversed(traceback.extract_stack()):
        if not os.path.abspath(fr.filename).startswith(_ENGINE_DIRS):
            return f"{fr.filename}:{fr.lineno} ({fr.line})"
    return "<unknown>"


def trace(model_or_fn: Callable[..., Any], *example_inputs: Any, abstract: bool = False,
          input_names: Sequence[str] | None = None, keep_examples: bool = False, grad: bool = False,
          module: Any = None, state: Sequence[tuple[str, str, Tensor]] = ()) -> Graph:
    """Trace ``model_or_fn(*example_inputs)`` into a :class:`Graph`. Example inputs may be Tensors, arrays or
    :class:`engine.Spec` (shape-only; implies abstract evaluation for everything that depends on them).
    ``keep_examples`` stores each value's array from the example run in ``value.meta["example"]`` (passes such as
    fold_bn then measure their error on the real example input; drop them with :func:`drop_examples`)."""
    module = model_or_fn if module is None else module  # whose parameters and buffers get names
    graph = Graph()
    named, module_names = _named_state(module)
    for name, kind, t in state:  # extra named state (an optimizer's buffers, the learning rate)
        named.setdefault(id(t), (name, kind, t))
    env: dict[int, Value] = {}
    alive: list[Tensor] = []  # keep every seen tensor alive so ids are never reused during the trace

    ins = [_as_tensor(x, abstract) for x in example_inputs]
    names = list(input_names) if input_names else _input_names(module, len(ins))
    for name, t in zip(names, ins):
        env[id(t)] = graph.add_input(name, t.spec, "input")
        alive.append(t)
        if keep_examples and t._data is not None:
            env[id(t)].meta["example"] = to_host(t._data)

    def value_of(t: Tensor, prim_name: str) -> Value:
        v = env.get(id(t))
        if v is not None:
            return v
        if id(t) in named:
            name, kind, _ = named[id(t)]
            v = graph.add_input(name, t.spec, kind, t._data)
        else:
            if t._data is None:
                raise ValueError(f"trace: an input of '{prim_name}' is an abstract tensor {t.spec!r} that was not "
                                 f"produced inside the trace; pass it as an example input instead")
            v = graph.add_input(t.name or "const", t.spec, "const", t._data)
        env[id(t)] = v
        alive.append(t)
        return v

    state_updates: list[tuple[Tensor, Tensor]] = []

    def observer(prim: Primitive, inputs: tuple[Tensor, ...], attrs: dict[str, Any], outs: tuple[Tensor, ...]) -> None:
        if prim is rng_key_p:  # a random key: drawn per call by whoever runs the graph
            env[id(outs[0])] = graph.add_input("key", outs[0].spec, "key")
            alive.append(outs[0])
            return
        in_vals = [value_of(t, prim.name) for t in inputs]
        stack = autograd.current_modules()
        meta = {"phase": autograd.current_phase()}
        if stack:
            meta["module"] = module_names.get(id(stack[-1]), "")
            meta["module_type"] = type(stack[-1]).__name__
        node = graph.create_node(prim, in_vals, attrs, meta=meta, out_specs=[o.spec for o in outs])
        for t, v in zip(outs, node.outputs):
            env[id(t)] = v
            alive.append(t)
            if keep_examples and t._data is not None:
                v.meta["example"] = to_host(t._data)

    def on_state(target: Tensor, new: Tensor) -> None:
        alive.append(new)
        state_updates.append((target, new))

    def on_read(what: str, t: Tensor) -> None:
        if id(t) in env and env[id(t)].kind not in ("param", "buffer", "const"):
            warnings.warn(f"trace: {what} on a traced tensor at {_user_frame()}: the value it had while tracing "
                          f"is baked into the graph (Python control flow is not recorded)", TracerWarning,
                          stacklevel=3)

    rng_state = _random.get_rng_state()  # a concrete trace runs rng_key kernels: give the draws back
    try:
        with (autograd.enable_grad() if grad else autograd.no_grad()), autograd.observe(observer), \
                autograd.observe_state(on_state), autograd.observe_reads(on_read):
            if abstract:
                with autograd.abstract():
                    out = model_or_fn(*ins)
            else:
                out = model_or_fn(*ins)
    finally:
        _random.set_rng_state(rng_state)
    outs, structure = _flatten(out)
    graph.outputs = [value_of(t, "<output>") for t in outs]
    latest: dict[int, tuple[Tensor, Tensor]] = {}
    for target, new in state_updates:  # a buffer updated twice (a module called twice) keeps its last value
        latest[id(target)] = (target, new)
    state_outputs = []
    for target, new in latest.values():
        buf = value_of(target, "<state>")
        graph.outputs.append(value_of(new, "<state>"))
        state_outputs.append(buf.name)
    graph.meta.update(training=bool(getattr(module, "training", False)), abstract=abstract,
                      output_structure=structure, model=type(module).__name__, n_outputs=len(outs),
                      state_outputs=state_outputs)
    return graph


def drop_examples(graph: Graph) -> None:
    """Forget the example arrays ``trace(keep_examples=True)`` stored (they hold every activation alive)."""
    for v in graph.values():
        v.meta.pop("example", None)
