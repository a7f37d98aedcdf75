"""compile_step(model, loss_fn, optimizer, *example_inputs): one graph for a whole training step.

The step is traced as a pure function: ``loss = loss_fn(model(*xs), *targets)``, the gradients of every trainable
parameter from the vjp rules (:func:`engine.autograd.grad`), then one ``optimizer_update`` node per parameter, the
optimizer's own array update. Parameters, buffers, optimizer state, the learning rate and step counts are graph
inputs; their new values (and BatchNorm running statistics) are graph outputs that the executor writes into the
live arrays in place, after their last reader. So one call is one pass over the graph with no Python work per
parameter, and the model, the optimizer's ``state`` and its ``state_dict`` stay what eager training would leave.
The learning rate is read from ``optimizer.param_groups`` on every call, so schedulers keep working.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from engine import autograd
from engine.autograd import bind
from engine.backend import Backend, active_backend, get_backend, to_host
from engine.optim.optimizer import Optimizer
from engine.optim.update import optimizer_update_p
from engine.primitive import Spec
from engine.tensor import Tensor

from .compile import CompileReport, build_executor, compile_key, gc_paused, make_report, spec_of, state_tensors
from .ir import Graph
from .passes import run_passes, set_channel_block
from .remat import rematerialize, saved_bytes_by_op
from .trace import trace


class CompiledStep:
    """``step(*xs, *targets) -> loss`` (``(loss, outputs)`` with ``return_outputs``): forward, loss, backward and
    the optimizer update as one graph. ``.graph``, ``.report``, ``.plan`` and ``.render()`` describe it."""

    def __init__(self, model: Any, loss_fn: Callable[..., Tensor], optimizer: Optimizer, n_inputs: int | None,
                 backend: str | Backend | None, passes: Any, arena: bool, reorder: bool, return_outputs: bool,
                 memory_budget: int | float | None = None, layout: str | int | None = None):
        self.model, self.loss_fn, self.optimizer = model, loss_fn, optimizer
        self.layout = layout
        self.n_inputs = n_inputs
        self.backend = get_backend(backend) if backend is not None else active_backend()
        self.passes, self.arena, self.reorder, self.return_outputs = passes, arena, reorder, return_outputs
        self.memory_budget = memory_budget
        self._key: tuple | None = None
        self._opt_state: dict | None = None
        self.graph: Graph | None = None

    # --- compilation ---------------------------------------------------------------------------------------
    def _compile(self, specs: list[Spec]) -> None:
        t0 = time.perf_counter()
        model, opt = self.model, self.optimizer
        k = len(specs) - 1 if self.n_inputs is None else self.n_inputs
        named_params = {id(p): n for n, p in model.named_parameters()}
        extra: list[tuple[str, str, Tensor]] = []
        updates: list[tuple[Tensor, dict[str, Any], Tensor, tuple[str, ...], tuple, Tensor]] = []
        self._lr: list[tuple[np.ndarray, dict[str, Any]]] = []
        for gi, group in enumerate(opt.param_groups):
            lr = Tensor(np.asarray(group["lr"], np.float64))
            extra.append((f"optim.lr{gi}" if len(opt.param_groups) > 1 else "optim.lr", "buffer", lr))
            self._lr.append((lr._data, group))
            hyper = tuple(sorted((n, v) for n, v in group.items() if n not in ("params", "lr")))
            for p in group["params"]:
                if not p.requires_grad:
                    continue
                if id(p) not in named_params:
                    raise ValueError(f"compile_step: the optimizer holds a parameter {list(p.shape)} that is not a "
                                     f"parameter of {type(model).__name__}")
                state = opt.array_state(p, opt.state.setdefault(p, {}), group)
                for n, v in state.items():  # the state lives where the graph runs (it is written in place)
                    if not self.backend.is_native(v):
                        state[n] = self.backend.from_host(to_host(v))
                keys = tuple(n for n in state if n != "step")
                tensors = {}
                for n in (*keys, "step"):
                    t = Tensor._make(state[n], Spec(state[n].shape, state[n].dtype))
                    extra.append((f"optim.{named_params[id(p)]}.{n}", "buffer", t))
                    tensors[n] = t
                updates.append((p, tensors, lr, keys, hyper, tensors["step"]))
        params = [u[0] for u in updates]

        def step_fn(*args: Tensor) -> tuple[Tensor, ...]:
            out = model(*args[:k])
            loss = self.loss_fn(out, *args[k:])
            grads = autograd.grad(loss, params)
            with autograd.phase("update"):
                apply_updates(grads)
            outs = [out] if isinstance(out, Tensor) else list(out)
            return (loss, *outs) if self.return_outputs else (loss,)

        def apply_updates(grads: tuple) -> None:
            for (p, tensors, lr, keys, hyper, step), g in zip(updates, grads):
                if g is None:  # unused parameter: eager optimizers skip it too (its .grad stays None)
                    continue
                new = bind(optimizer_update_p, p, g, *(tensors[n] for n in keys), lr, step, rule=type(opt),
                           hyper=hyper, keys=keys)
                for target, value in zip((p, *(tensors[n] for n in keys), step), new):
                    autograd.assign_state(target, value)

        names = [f"x{i}" for i in range(k)] + [f"target{i}" for i in range(len(specs) - k)]
        g = trace(step_fn, *specs, abstract=True, grad=True, module=model, state=extra, input_names=names)
        g.meta.update(frozen=False, step=True, joint=True, backend=self.backend.name)  # passes may ask for kernels
        set_channel_block(g, self.backend, self.layout)
        g.verify()
        t1 = time.perf_counter()
        g, rows = run_passes(g, self.passes if self.passes is not None else "training_joint")
        remat = None
        if self.memory_budget is not None:  # planned as build_executor will: concat views on host backends
            remat = rematerialize(g, self.memory_budget, self.backend.device == "cpu")
        if remat is not None:
            g = remat.graph
        t2 = time.perf_counter()
        by_name = {v.name: v for v in g.inputs}
        n_ret = g.meta["n_outputs"]
        writes = {n_ret + i: by_name[name] for i, name in enumerate(g.meta["state_outputs"])}
        plan, executor = build_executor(g, self.backend, self.arena, self.reorder, writes)
        t3 = time.perf_counter()
        self.graph, self.plan, self.executor = g, plan, executor
        self.report: CompileReport = make_report(model, self.backend, g, plan, specs, rows, (t0, t1, t2, t3),
                                                 [executor])
        self.report["updates"] = sum(1 for n in g.nodes if n.op is optimizer_update_p)
        self.report["saved_for_backward"] = saved_bytes_by_op(g)
        if remat is not None:
            self.report["remat"] = remat.summary()
        live = {**state_tensors(model), **{n: t for n, _, t in extra}}
        self._state = [live[v.name] for v in g.inputs if v.kind in ("param", "buffer")]
        self._targets = [live[n] for n in g.meta["state_outputs"]]
        self._opt_state = opt.state

    # --- calling -----------------------------------------------------------------------------------------
    def compile_for(self, *inputs: Any) -> None:
        """Compile for these inputs' shapes and the model's mode, unless the current graph already fits (a new
        ``optimizer.state`` dict, as ``load_state_dict`` makes, also recompiles: the graph reads its arrays)."""
        specs = [spec_of(x) for x in inputs]
        key = compile_key(self.model, specs)
        if key != self._key or self.optimizer.state is not self._opt_state:
            with gc_paused():
                self._compile(specs)
            self._key = key

    def __call__(self, *inputs: Any) -> Any:
        self.compile_for(*inputs)
        for arr, group in self._lr:
            arr[...] = group["lr"]
        state = [t._data for t in self._state]
        n_ret = self.graph.meta["n_outputs"]
        outs: list[np.ndarray | None] = [None] * n_ret + [t._data for t in self._targets]
        got = self.executor.run(*(x.data if isinstance(x, Tensor) else x for x in inputs),
                                state=state, outs=outs)
        for t in self._targets:  # written in place: tell compiled inference modules the weights moved
            t.bump_version()
        loss = Tensor(got[0])
        if not self.return_outputs:
            return loss
        outputs = [Tensor(a) for a in got[1:n_ret]]
        return loss, outputs[0] if len(outputs) == 1 else tuple(outputs)

    def render(self, path: str, **kwargs: Any) -> Any:
        from .render import render

        if self.graph is None:
            raise RuntimeError("compile_step: not compiled yet; call it with a batch first")
        return render(self.graph, path, **kwargs)


def compile_step(model: Any, loss_fn: Callable[..., Tensor], optimizer: Optimizer, *example_inputs: Any,
                 n_inputs: int | None = None, backend: str | Backend | None = None, passes: Any = None,
                 arena: bool = True, reorder: bool = True, return_outputs: bool = False,
                 memory_budget: int | float | None = None, layout: str | int | None = None) -> CompiledStep:
    """Compile one training step. ``example_inputs`` are the model's inputs followed by the loss's extra arguments
    (``n_inputs`` model inputs; default: all but the last). Calling the result runs forward, loss, backward and
    ``optimizer``'s update in one graph and returns the loss. ``memory_budget`` (bytes, or a fraction <= 1 of the
    plan without recomputation) recomputes forward values in the backward until the planned peak fits
    (graph/remat.py; ``report["remat"]`` says what was recomputed and at what cost). ``layout``: as ``compile``'s
    (None reads ``CONVGRAPH_LAYOUT``); where it gives a channel block, activations and their gradients stay blocked
    between 3x3 convolutions (graph/passes/train_layout.py)."""
    for name, fn in (("loss_fn", loss_fn),):
        if not callable(fn):
            raise TypeError(f"compile_step: {name} must be callable (got {type(fn).__name__})")
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"compile_step: optimizer must be an engine.optim.Optimizer (got {type(optimizer).__name__})")
    if len(example_inputs) < 2 and n_inputs is None:
        raise TypeError("compile_step: pass the model's example inputs and the loss targets, e.g. "
                        "compile_step(model, F.cross_entropy, opt, x, y)")
    _check_budget(memory_budget)
    step = CompiledStep(model, loss_fn, optimizer, n_inputs, backend, passes, arena, reorder, return_outputs,
                        memory_budget, layout)
    step.compile_for(*example_inputs)
    return step


def _check_budget(budget: Any) -> None:
    if budget is None:
        return
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not budget > 0:
        raise ValueError(f"memory_budget must be a positive number of bytes or a fraction in (0, 1] "
                         f"(got {budget!r})")
