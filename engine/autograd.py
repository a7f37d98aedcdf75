"""bind() runs one primitive eagerly (or abstractly) and records it; backward() applies the vjp rules.

Every interpretation of a primitive goes through :func:`bind`:
  1. the shape rule validates inputs and gives output specs (same error messages everywhere);
  2. the active backend's kernel fills freshly allocated outputs (skipped in abstract mode);
  3. the call is recorded on the tape when an input requires grad, and shown to every registered observer
     (this is how ``graph.trace`` turns a forward pass into IR without the engine importing ``graph``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from . import profiler as _profiler
from .backend import dispatch, to_host
from .primitive import Primitive
from .tensor import Node, Tensor, read_observers

_grad_enabled = True
_abstract = False
_anomaly = False
# observer(prim, inputs, attrs, outputs) is called after every bind; graph.trace registers one.
_observers: list[Callable[[Primitive, tuple[Tensor, ...], dict[str, Any], tuple[Tensor, ...]], None]] = []


@contextlib.contextmanager
def no_grad() -> Iterator[None]:
    """Run ops without recording them on the tape (inference, optimizer updates)."""
    global _grad_enabled
    prev, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = prev


@contextlib.contextmanager
def enable_grad() -> Iterator[None]:
    global _grad_enabled
    prev, _grad_enabled = _grad_enabled, True
    try:
        yield
    finally:
        _grad_enabled = prev


def is_grad_enabled() -> bool:
    return _grad_enabled


class set_grad_enabled(contextlib.ContextDecorator):  # noqa: N801 - the PyTorch name
    """torch.set_grad_enabled: ``set_grad_enabled(False)`` switches recording off at once; used as a context
    manager (or decorator) it restores the previous mode on exit."""

    def __init__(self, mode: bool) -> None:
        global _grad_enabled
        self.prev, _grad_enabled = _grad_enabled, bool(mode)
        self.mode = bool(mode)

    def __enter__(self) -> None:
        global _grad_enabled
        _grad_enabled = self.mode

    def __exit__(self, *exc: object) -> None:
        global _grad_enabled
        _grad_enabled = self.prev


def inference_mode(mode: bool = True) -> contextlib.AbstractContextManager[None]:
    """torch.inference_mode: here the same as ``no_grad`` (``inference_mode(False)`` leaves the mode as it is)."""
    return no_grad() if mode else contextlib.nullcontext()


@contextlib.contextmanager
def abstract() -> Iterator[None]:
    """Shape-only evaluation: bind runs shape rules but no kernels (as JAX's abstract evaluation does)."""
    global _abstract
    prev, _abstract = _abstract, True
    try:
        yield
    finally:
        _abstract = prev


def is_abstract() -> bool:
    return _abstract


class AnomalyError(FloatingPointError):
    """A primitive produced NaN or Inf while anomaly detection was on."""


@contextlib.contextmanager
def detect_anomaly() -> Iterator[None]:
    """Check every primitive's outputs (forward and backward) and name the first one that is not finite."""
    global _anomaly
    prev, _anomaly = _anomaly, True
    try:
        yield
    finally:
        _anomaly = prev


@contextlib.contextmanager
def observe(fn: Callable[..., None]) -> Iterator[None]:
    """Register ``fn(prim, inputs, attrs, outputs)`` to see every primitive call inside the block."""
    _observers.append(fn)
    try:
        yield
    finally:
        _observers.remove(fn)


# state_observer(target, new) replaces the in-place write of a state update (BatchNorm running statistics)
# while a trace runs, so tracing never changes the model and the update becomes a graph output instead.
_state_observers: list[Callable[[Tensor, Tensor], None]] = []


@contextlib.contextmanager
def observe_state(fn: Callable[[Tensor, Tensor], None]) -> Iterator[None]:
    """Inside the block, :func:`assign_state` calls ``fn(target, new)`` instead of writing ``target``."""
    _state_observers.append(fn)
    try:
        yield
    finally:
        _state_observers.remove(fn)


def assign_state(target: Tensor, new: Tensor) -> None:
    """A state update (``target <- new``, e.g. a BatchNorm running mean). Eagerly it replaces ``target``'s data
    (bumping its version); while a trace observes state it is reported instead, and the model is left as it was."""
    if _state_observers:
        for obs in tuple(_state_observers):
            obs(target, new)
        return
    if new._data is None:  # shape-only evaluation outside a trace: nothing to write
        return
    if new.dtype != target.dtype:
        with no_grad():
            new = new.astype(target.dtype)
    target.data = new._data


@contextlib.contextmanager
def observe_reads(fn: Callable[[str, Tensor], None]) -> Iterator[None]:
    """Inside the block, ``fn(what, tensor)`` is told whenever Python reads a tensor's value (``bool()``,
    ``item()``, ``float()``, ``int()``, ``__index__``): a trace warns that control flow on it is baked in."""
    read_observers.append(fn)
    try:
        yield
    finally:
        read_observers.remove(fn)


# Modules currently executing (outermost first); Module.__call__ pushes itself so observers such as
# graph.trace can attribute each primitive call to the module that made it.
_module_stack: list[Any] = []
_phase = ["forward"]  # "backward" while backward() runs: what the profiler files kernel time under


@contextlib.contextmanager
def module_scope(module: Any) -> Iterator[None]:
    _module_stack.append(module)
    try:
        yield
    finally:
        _module_stack.pop()


def current_modules() -> tuple[Any, ...]:
    """The stack of modules whose forward is running, outermost first."""
    return tuple(_module_stack)


def bind(prim: Primitive, *inputs: Tensor, **attrs: Any) -> Any:
    """Run ``prim`` on Tensors. Returns a Tensor, or a tuple of Tensors for multi-result primitives."""
    specs = tuple(t._spec for t in inputs)
    out_specs = prim.abstract_eval(*specs, **attrs)
    if _abstract or any(t._data is None for t in inputs):
        outs = tuple(Tensor._make(None, s) for s in out_specs)
    else:
        backend, ins = dispatch(prim.name, tuple(t._data for t in inputs))
        launch = None if not _profiler._active else _profiler.launcher(
            _phase[-1], _module_stack[-1] if _module_stack else None, prim.name,
            backend.synchronize if backend.device != "cpu" else None)
        arrays = backend.run(prim, ins, attrs, out_specs=out_specs, launch=launch)
        outs = tuple(Tensor._make(a, s) for a, s in zip(arrays, out_specs))
        if _anomaly:
            _check_finite(prim, outs, "forward")
    if _grad_enabled and prim.vjp_rule is not None and any(t.requires_grad for t in inputs):
        node = Node(prim, inputs, attrs, outs)
        if _profiler._active:  # so the profiler can attribute this node's backward kernels to the layer
            node.module = _module_stack[-1] if _module_stack else None
        for i, o in enumerate(outs):
            if o._spec.dtype.kind == "f":
                o.requires_grad = True
                o._node = node
                o._index = i
    for obs in tuple(_observers):
        obs(prim, inputs, attrs, outs)
    return outs if prim.multiple_results else outs[0]


def _check_finite(prim: Primitive, outs: tuple[Tensor, ...], phase: str) -> None:
    for i, o in enumerate(outs):
        data = None if o._data is None or o.dtype.kind != "f" else to_host(o._data)  # a host-side check
        if data is not None and not np.all(np.isfinite(data)):
            bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
            raise AnomalyError(f"{prim.name} ({phase}) produced {bad} non-finite value(s) in output {i} "
                               f"of shape {list(o.shape)}")


def _toposort(root: Tensor) -> list[Node]:
    """Nodes reachable from ``root`` in reverse topological order (outputs before inputs).

    Iterative DFS with an explicit stack (deep CNN tapes exceed Python's recursion limit); the visit order
    follows input order, so the result is deterministic.
    """
    order: list[Node] = []
    seen: set[int] = set()
    if root._node is None:
        return order
    stack: list[tuple[Node, bool]] = [(root._node, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        for t in reversed(node.inputs):
            if t._node is not None and id(t._node) not in seen:
                stack.append((t._node, False))
    order.reverse()
    return order


def _accumulate(grads: dict[Any, Tensor], key: Any, g: Tensor, like: Tensor, where: str, what: str = "tensor") -> None:
    """grads[key] += g, after checking g has the shape of ``like`` (a leaf "tensor" or an intermediate "input")."""
    if g.shape != like.shape:
        raise RuntimeError(f"{where}: gradient shape {list(g.shape)} does not match {what} shape {list(like.shape)}")
    prev = grads.get(key)
    grads[key] = g if prev is None else prev + g


def _seed(root: Tensor, grad: Tensor | np.ndarray | None, where: str) -> Tensor:
    """The cotangent that starts a backward pass at ``root`` (ones for a scalar root)."""
    if grad is None:
        if root.numel() != 1:
            raise RuntimeError(f"{where}: grad can be implicitly created only for scalar outputs, "
                               f"but the output has shape {list(root.shape)}; pass grad=")
        return root.new_tensor(np.ones(root.shape, root.dtype))
    g0 = grad if isinstance(grad, Tensor) else root.new_tensor(np.asarray(grad, dtype=root.dtype))
    if g0.shape != root.shape:
        raise RuntimeError(f"{where}: grad shape {list(g0.shape)} does not match output shape {list(root.shape)}")
    return g0


def grad(outputs: Tensor | Sequence[Tensor], inputs: Sequence[Tensor],
         grad_outputs: Tensor | Sequence[Tensor | None] | None = None) -> tuple[Tensor | None, ...]:
    """d(outputs)/d(inputs), as ``torch.autograd.grad``: one gradient per input (None where the outputs do not
    depend on it); no ``.grad`` is touched. The vjp rules run through :func:`bind`, so under a trace the backward
    pass becomes graph nodes (bound while :func:`current_phase` is "backward")."""
    outs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    if grad_outputs is None:
        gos: list[Any] = [None] * len(outs)
    elif isinstance(grad_outputs, Tensor):
        gos = [grad_outputs]
    else:
        gos = list(grad_outputs)
    if len(gos) != len(outs):
        raise ValueError(f"grad: got {len(gos)} grad_outputs for {len(outs)} outputs")
    if len(outs) > 1 and any(g is None for g in gos):
        raise ValueError("grad: pass one grad_output per output when there are several outputs")
    seeds = [(o, _seed(o, g, "grad")) for o, g in zip(outs, gos) if o.requires_grad]
    if not seeds:
        raise RuntimeError("grad: no output requires grad (no input of the computation requires grad)")
    _phase.append("backward")
    try:
        got = _backward(seeds, tuple(inputs))
    finally:
        _phase.pop()
    return tuple(got.get(id(t)) for t in inputs)


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    """Bind primitives under another phase name (``compile_step`` binds its optimizer updates as "update")."""
    _phase.append(name)
    try:
        yield
    finally:
        _phase.pop()


def current_phase() -> str:
    """"forward", "backward" (or "update"): which pass the primitive being bound belongs to."""
    return _phase[-1]


def backward(root: Tensor, grad: Tensor | np.ndarray | None = None, retain_graph: bool = False) -> None:
    """Accumulate d(root)/d(leaf) into ``leaf.grad`` for every leaf that requires grad. As in PyTorch the graph is
    released afterwards (its saved outputs dropped): a second backward through it is an error unless the first
    one passed ``retain_graph=True``."""
    if not root.requires_grad:
        raise RuntimeError("backward: tensor does not require grad (no input of the computation requires grad)")
    g0 = _seed(root, grad, "backward")
    _phase.append("backward")
    try:
        _backward([(root, g0)], None, release=not retain_graph)
    finally:
        _phase.pop()


def _check_usable(order: list[Node]) -> None:
    """Refuse a backward through released nodes, or through nodes whose inputs were written in place since."""
    for node in order:
        if node.released:
            raise RuntimeError(f"backward: trying to backward through the graph a second time ('{node.prim.name}' "
                               f"was released by an earlier backward); pass retain_graph=True to the first "
                               f"backward() to backward through it again")
        for i, (t, v) in enumerate(zip(node.inputs, node.versions)):
            # only differentiable inputs: state buffers (counters, running statistics) are rewritten by design
            if t._version != v and t.requires_grad:
                raise RuntimeError(f"backward: input {i} {t.spec} of '{node.prim.name}' was modified by an in-place "
                                   f"operation after it was used (version {t._version}, expected {v}); compute "
                                   f"out of place (y = x + 1) or clone() it first")


def _backward(seeds: list[tuple[Tensor, Tensor]], wanted: tuple[Tensor, ...] | None, release: bool = False) -> Any:
    """Apply the vjp rules from ``seeds`` [(root, cotangent)] back to the leaves. ``wanted=None``: accumulate into
    every leaf's ``.grad`` (``backward``); else return the gradients of the ``wanted`` tensors (``grad``).
    ``release`` marks the nodes used and drops their saved outputs (``backward`` without ``retain_graph``)."""
    want = None if wanted is None else {id(t) for t in wanted}
    order = _toposort_many([r for r, _ in seeds if r._node is not None])
    _check_usable(order)
    with no_grad():
        cts: dict[tuple[int, int], Tensor] = {}  # cotangents keyed by (node id, output index)
        leaf_grads: dict[int, Tensor] = {}  # keyed by tensor id: leaves, and wanted intermediates
        leaves: dict[int, Tensor] = {}
        for root, g0 in seeds:
            if root._node is None or (want is not None and id(root) in want):
                leaves[id(root)] = root
                _accumulate(leaf_grads, id(root), g0, root, "backward")
                if root._node is None:
                    continue
            _accumulate(cts, (id(root._node), root._index), g0, root, "backward", "input")
        for node in order:
            n_out = len(node.out_specs)
            gs = tuple(cts.pop((id(node), i), None) for i in range(n_out))
            if all(g is None for g in gs):
                continue
            outs = node.outputs()
            if release:  # what torch calls freeing the saved tensors: this node's outputs are only in ``outs`` now
                node.released = True
                node._out_data = (None,) * n_out
            _module_stack.append(node.module)  # kernels of the vjp rule belong to the layer that made the node
            try:
                if node.prim.multiple_results:
                    in_grads = node.prim.vjp_rule(gs, outs, *node.inputs, **node.attrs)
                else:
                    in_grads = node.prim.vjp_rule(gs[0], outs[0], *node.inputs, **node.attrs)
            except AnomalyError as e:  # a primitive inside the vjp rule: say whose gradient it was computing
                raise AnomalyError(f"backward of '{node.prim.name}': {e}") from e
            finally:
                _module_stack.pop()
            if len(in_grads) != len(node.inputs):
                raise RuntimeError(f"vjp rule of '{node.prim.name}' returned {len(in_grads)} gradients "
                                   f"for {len(node.inputs)} inputs")
            if _anomaly:
                _check_finite(node.prim, tuple(g for g in in_grads if g is not None), "backward")
            for x, gx in zip(node.inputs, in_grads):
                if gx is None or not x.requires_grad:
                    continue
                where = f"backward of '{node.prim.name}'"
                if x._node is None or (want is not None and id(x) in want):
                    leaves[id(x)] = x
                    _accumulate(leaf_grads, id(x), gx, x, where)
                if x._node is not None:
                    _accumulate(cts, (id(x._node), x._index), gx, x, where, "input")
        if wanted is not None:
            return {k: g for k, g in leaf_grads.items() if k in want}  # made under no_grad: no tape to cut
        for k, g in leaf_grads.items():
            leaf = leaves[k]
            g = g.detach()
            leaf.grad = g if leaf.grad is None else leaf.grad + g
        return None


def _toposort_many(roots: list[Tensor]) -> list[Node]:
    """Reverse topological order of the nodes reachable from several roots. Each root's own order lists inputs
    before outputs; keeping every node at its first appearance keeps that true for the concatenation, since a
    node feeding one reached earlier was reached from that earlier root too."""
    order: list[Node] = []
    seen: set[int] = set()
    for root in roots:
        for node in reversed(_toposort(root)):  # inputs before outputs
            if id(node) not in seen:
                seen.add(id(node))
                order.append(node)
    order.reverse()
    return order
