"""compile(model, *example_inputs) -> CompiledModule: trace -> verify -> passes -> plan memory -> arena executor.

The compiled module is callable like the model. Compilation is keyed by the input shapes/dtypes and the model's
train/eval mode: a call with new shapes compiles again and says so through ``logging`` (logger
``graph.compile``), never silently reusing a plan made for other shapes.

- Eval mode: parameters are folded into new constants. The module remembers the version of every parameter and
  buffer it folded; a call after any of them changed (an optimizer step, ``.data =``, ``load_state_dict``)
  recompiles first (logged), so it never mixes old and new weights.
- Train mode: the forward and its backward are traced into one joint graph (graph/training.py), passes run on it,
  and it is split into a forward and a backward graph. A call runs the forward as one ``call_graph`` primitive
  whose vjp runs the backward graph, so ``loss.backward()`` fills the ``.grad`` of the model's own parameters.
  Parameters and buffers are runtime inputs (read live on every call), random keys are drawn per call from the
  engine's generator, and BatchNorm's running statistics come back as outputs written to the buffers.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from engine.backend import Backend, active_backend, device_of, get_backend
from engine.primitive import Spec
from engine.random import get_rng_state, set_rng_state
from engine.tensor import Tensor, writes

from .executor import ArenaExecutor, Executor, kernel_for
from .ir import Graph, Value
from .memory import MemoryPlan, plan_memory
from .passes import run_passes, set_channel_block
from .remat import rematerialize, saved_bytes_by_op
from .trace import drop_examples, trace
from .training import GraphFunction, make_vjp, split_joint, trace_joint

log = logging.getLogger("graph.compile")


def spec_of(x: Any) -> Spec:
    if isinstance(x, Spec):
        return x
    if isinstance(x, Tensor):
        return x.spec
    if not isinstance(x, np.ndarray) and device_of(x) is not None:  # a device array
        return Spec(x.shape, x.dtype)
    arr = np.asarray(x)
    return Spec(arr.shape, np.float32 if arr.dtype == np.float64 and not isinstance(x, np.ndarray) else arr.dtype)


class CompileReport(dict):
    """The compile report (a dict; ``str()`` formats it). Keys: ``model``, ``backend``, ``training``,
    ``input_shapes``, ``passes`` (one row per pass: changed, nodes before/after, kernels, FLOPs, bytes, time),
    ``fold_errors`` (node -> max abs error of the folded subgraph), ``layout`` (the layout pass: block, blocked nodes,
    every reorder that remains; empty when the graph stayed NCHW), ``memory`` (naive / arena / lower bound /
    fragmentation / kernel workspaces), ``transfer`` (host<->device bytes per call, ``h2d_bytes`` / ``d2h_bytes``:
    0 on a host backend), ``stats`` (final kernels, MACs, FLOPs, bytes), ``kernels`` (node -> kernel
    used, with its algorithm note in brackets), ``algorithms`` (node -> the backend's algorithm note, where it gives
    one), ``autotune``, timings (``trace_s``, ``passes_s``, ``plan_s``, ``compile_s``) and ``check`` when
    ``compile(check=True)``."""

    def __str__(self) -> str:
        mib = 1 << 20
        lines = [f"compiled {self['model']} for {self['input_shapes']} on backend {self['backend']!r} "
                 f"({'training' if self['training'] else 'eval'} mode) in {self['compile_s'] * 1e3:.1f} ms "
                 f"(trace {self['trace_s'] * 1e3:.1f}, passes {self['passes_s'] * 1e3:.1f}, "
                 f"plan {self['plan_s'] * 1e3:.1f}, kernels {self.get('kernels_s', 0.0) * 1e3:.1f})",
                 f"{'pass':<16}{'changed':>8}{'nodes':>14}{'kernels':>9}{'GFLOPs':>10}{'MB moved':>10}{'ms':>8}"]
        for r in self["passes"]:
            lines.append(f"{r['pass']:<16}{'yes' if r['changed'] else 'no':>8}"
                         f"{str(r['nodes_before']) + ' -> ' + str(r['nodes_after']):>14}{r['kernels']:>9}"
                         f"{r['flops'] / 1e9:>10.3f}{r['bytes'] / 1e6:>10.2f}{r['time_s'] * 1e3:>8.1f}")
        fe = self.get("fold_errors") or {}
        if fe:
            lines.append(f"folded BatchNorms: {len(fe)}, max fold error {max(fe.values()):.3g} "
                         f"(max abs diff per folded conv/linear, on the {self.get('fold_error_input', 'probe')})")
        m = self["memory"]
        lines.append(f"memory: naive {m['naive_bytes'] / mib:.2f} MiB, planned arena {m['arena_bytes'] / mib:.2f} MiB, "
                     f"lower bound {m['lower_bound_bytes'] / mib:.2f} MiB, fragmentation {m['fragmentation']:.1%}, "
                     f"kernel workspaces {m['workspace_bytes'] / mib:.2f} MiB"
                     + (f", {m['concats_in_place']} concats in place" if m.get("concats_in_place") else ""))
        t = self.get("transfer")
        if t is not None:
            lines.append(f"host<->device per call: {t['h2d_bytes']} bytes in, {t['d2h_bytes']} bytes out")
        s = self["stats"]
        if self.get("layout", {}).get("declined"):
            lines.append(f"layout: NCHW (blocked layout declined: {self['layout']['declined']})")
        elif self.get("layout"):
            lay = self["layout"]
            lines.append(f"layout: NCHW{lay['block']}c on {lay['blocked_nodes']} nodes, {len(lay['reorders'])} "
                         f"reorders" + "".join(f"\n  {r}" for r in lay["reorders"]))
        lines.append(f"final: {s['kernels']} kernels, {s['macs'] / 1e9:.3f} GMACs = {s['flops'] / 1e9:.3f} GFLOPs")
        if self.get("algorithms"):  # the backend's per-node notes (conv: the chosen algorithm, measured or not)
            lines.append("algorithms:")
            lines += [f"  {n}: {a}" for n, a in self["algorithms"].items()]
        if "check" in self:
            lines.append(f"check vs eager on the example input: max abs diff {self['check']['max_abs_diff']:.3g}")
        return "\n".join(lines)


class _Compiled:
    __slots__ = ("graph", "plan", "executor", "report", "versions", "checked_at", "function", "state",
                 "state_targets", "backward")

    def __init__(self, graph: Graph, plan: MemoryPlan | None, executor: Executor, report: CompileReport):
        self.graph, self.plan, self.executor, self.report = graph, plan, executor, report
        self.versions: list[tuple[Tensor, int]] = []  # eval graphs: the weights they folded, at which version
        self.checked_at = -1  # engine.tensor.writes() when the versions last all matched
        self.function: GraphFunction | None = None  # train graphs: the forward as a primitive
        self.state: list[Tensor] = []  # its params/buffers inputs, live
        self.state_targets: list[Tensor] = []  # buffers receiving the state outputs
        self.backward: _Compiled | None = None

    def stale(self) -> Tensor | None:
        """A folded weight that changed since compiling, or None. Scanning every weight's version costs ~8 us on
        MobileNetV2's, each call: skipped while no tensor has been written since the last scan."""
        now = writes()
        if now == self.checked_at:
            return None
        changed = next((t for t, ver in self.versions if t._version != ver), None)
        if changed is None:
            self.checked_at = now
        return changed


def compile_key(model: Any, specs: Sequence[Spec]) -> tuple:
    """What a compilation is valid for: the input shapes and dtypes and the model's train/eval mode."""
    return tuple((s.shape, s.dtype.str) for s in specs), bool(getattr(model, "training", False))


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Compilation allocates many small objects; collecting them mid-way only costs time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def build_executor(g: Graph, backend: Backend, arena: bool, reorder: bool, writes: dict[int, Value] | None = None,
                   autotune: bool = False) -> tuple[MemoryPlan | None, Executor]:
    """Plan memory (reordering the schedule when that lowers the peak) and build the executor that runs ``g``."""
    plan = plan_memory(g, reorder=reorder, alignment=max(64, backend.alignment),
                       prefix_views=backend.device == "cpu") if arena else None
    if plan is not None:
        g.nodes = list(plan.schedule)
        return plan, ArenaExecutor(g, plan, backend, writes, autotune=autotune)
    return None, Executor(g, backend, writes, autotune=autotune)


def warm_up(executors: Sequence[Executor]) -> float:
    """On a JIT backend, run each executor once on zero inputs so every kernel compiles (and any measured algorithm
    choice is made) inside compile(), where the report can time it; returns the seconds spent. Side-effect free: no
    caller arrays are written and the random generator is restored."""
    if not executors or not executors[0].backend.jit:
        return 0.0
    t0 = time.perf_counter()
    rng = get_rng_state()
    try:
        for ex in executors:
            zeros = [ex.backend.from_host(np.zeros(v.shape, v.dtype)) for v in ex.graph.user_inputs]
            with np.errstate(all="ignore"):
                try:
                    ex.run(*zeros)
                except Exception as e:
                    e.add_note("while compiling the kernels of a new graph (one run on zero inputs)")
                    raise
    finally:
        set_rng_state(rng)
    return time.perf_counter() - t0


def make_report(model: Any, backend: Backend, g: Graph, plan: MemoryPlan | None, specs: Sequence[Spec],
                rows: list[dict[str, Any]], times: Sequence[float], executors: Sequence[Executor],
                autotune: bool = False) -> CompileReport:
    """The compile report of graph ``g`` run by ``executors`` (see :class:`CompileReport` for the keys); the kernel
    compilation of a JIT backend happens here (:func:`warm_up`) and counts into ``compile_s`` as ``kernels_s``."""
    kernels_s = warm_up(executors)
    t0, t1, t2, t3 = times
    described = {}
    for ex in executors:
        with ex.context:  # the notes see the executor's algorithm policy (autotune)
            described.update({n.name: _describe_kernel(backend, n) for n in ex.graph.nodes})
    memory = plan.summary() if plan is not None else \
        {k: 0 for k in ("naive_bytes", "arena_bytes", "lower_bound_bytes", "fragmentation")}
    memory["workspace_bytes"] = sum(ex.context.workspace_bytes for ex in executors)
    return CompileReport(
        model=type(model).__name__, backend=backend.name, training=bool(g.meta.get("training")),
        input_shapes=[list(s.shape) for s in specs], passes=rows, fold_errors=dict(g.meta.get("fold_errors", {})),
        layout=dict(g.meta.get("layout", {})),
        fold_error_input="example input" if not g.meta.get("abstract") else "probe input (abstract trace)",
        memory=memory, stats=g.stats(), kernels={n: f"{d} [{a}]" if a else d for n, (d, a) in described.items()},
        algorithms={n: a for n, (_, a) in described.items() if a}, autotune=autotune,
        transfer=transfer_per_call(backend, g),
        trace_s=t1 - t0, passes_s=t2 - t1, plan_s=t3 - t2, kernels_s=kernels_s, compile_s=t3 - t0 + kernels_s)


def transfer_per_call(backend: Backend, g: Graph) -> dict[str, int]:
    """Host <-> device bytes one call copies when the caller passes host arrays and wants host results: the user
    inputs in and the model outputs out (random keys in too); 0 on a host backend, where nothing is copied. Folded
    constants are uploaded once per compiled module, not per call; parameters of a training graph live on the
    device already."""
    if backend.device == "cpu":
        return {"h2d_bytes": 0, "d2h_bytes": 0}
    outs = g.outputs[:g.meta.get("n_outputs", len(g.outputs))]
    return {"h2d_bytes": sum(v.nbytes for v in g.inputs if v.kind in ("input", "key")),
            "d2h_bytes": sum(v.nbytes for v in outs)}


def state_tensors(model: Any) -> dict[str, Tensor]:
    """The model's parameters and buffers by state-dict name."""
    named: dict[str, Tensor] = {}
    for attr in ("named_parameters", "named_buffers"):
        if hasattr(model, attr):
            for name, t in getattr(model, attr)():
                if t is not None:
                    named.setdefault(name, t)
    return named


class CompiledModule:
    """A model compiled for one backend; call it like the model. ``.graph``, ``.report`` and ``.plan`` describe
    the most recent compilation; ``.render(path)`` draws its graph."""

    def __init__(self, model: Any, backend: str | Backend | None = None, passes: Any = None, *, arena: bool = True,
                 reorder: bool = True, abstract: bool = True, memory_budget: int | float | None = None,
                 autotune: bool = False, layout: str | int | None = None):
        self.model = model
        self.layout = layout
        self.memory_budget = memory_budget
        self.backend = active_backend() if backend is None else get_backend(backend)
        self.passes = passes
        self.arena = arena
        self.reorder = reorder
        self.abstract = abstract
        self.autotune = autotune
        self._cache: dict[tuple, _Compiled] = {}
        self._last: _Compiled | None = None

    # --- compilation ---------------------------------------------------------------------------------------
    def _key(self, specs: Sequence[Spec]) -> tuple:
        return compile_key(self.model, specs)

    def compile_for(self, *example_inputs: Any) -> _Compiled:
        specs = [spec_of(x) for x in example_inputs]
        key = self._key(specs)
        cached = self._cache.get(key)
        if cached is not None:
            changed = cached.stale()
            if changed is None:
                self._last = cached
                return cached
            log.info("recompiling %s: a folded weight changed since it was compiled (%s)", type(self.model).__name__,
                     changed.name or list(changed.shape))
            del self._cache[key]
        elif self._cache:
            log.info("recompiling %s for new input shapes %s (compiled before for %s)", type(self.model).__name__,
                     [list(s.shape) for s in specs], [[list(s) for s, _ in k[0]] for k in self._cache])
        with gc_paused():
            training = key[1]
            compiled = self._compile_training(specs) if training else self._compile(specs, example_inputs)
        self._cache[key] = compiled
        self._last = compiled
        return compiled

    def _compile(self, specs: list[Spec], example_inputs: tuple) -> _Compiled:
        t0 = time.perf_counter()
        concrete = all(not isinstance(x, Spec) for x in example_inputs)
        try:
            g = trace(self.model, *(specs if self.abstract else example_inputs), abstract=self.abstract,
                      keep_examples=not self.abstract)
        except RuntimeError as e:
            if not (self.abstract and concrete and "abstract tensor" in str(e)):
                raise
            # the model reads data in Python (e.g. float(x.max())): trace it on the real example inputs instead
            log.info("abstract trace of %s failed (%s); tracing with the example inputs", type(self.model).__name__, e)
            g = trace(self.model, *example_inputs, abstract=False, keep_examples=True)
        g.meta.setdefault("frozen", not g.meta["training"])
        g.verify()
        t1 = time.perf_counter()
        set_channel_block(g, self.backend, self.layout)
        g, rows = run_passes(g, self.passes)
        drop_examples(g)
        t2 = time.perf_counter()
        plan, executor = build_executor(g, self.backend, self.arena, self.reorder, autotune=self.autotune)
        t3 = time.perf_counter()
        compiled = _Compiled(g, plan, executor, make_report(self.model, self.backend, g, plan, specs, rows,
                                                            (t0, t1, t2, t3), [executor], self.autotune))
        named = state_tensors(self.model)
        compiled.versions = [(t, t._version) for t in named.values()]
        return compiled

    def _compile_training(self, specs: list[Spec]) -> _Compiled:
        """Train mode: joint trace -> passes -> split -> one executor per half (see the module docstring)."""
        t0 = time.perf_counter()
        named = state_tensors(self.model)
        params = [t for t in named.values() if t.requires_grad]
        joint, got, n_out = trace_joint(self.model, specs, params)
        joint.meta.update(frozen=False, backend=self.backend.name)  # passes may ask for its kernels
        set_channel_block(joint, self.backend, self.layout)
        joint.verify()
        t1 = time.perf_counter()
        by_id = {id(t): name for name, t in named.items()}
        grad_names = [by_id[id(params[i])] for i in got]
        joint, rows = run_passes(joint, self.passes if self.passes is not None else "training_joint")
        # the saved concatenations are outputs of the forward half here, so no concat is a view of another
        remat = rematerialize(joint, self.memory_budget, False) if self.memory_budget is not None else None
        if remat is not None:
            joint = remat.graph
        t2 = time.perf_counter()
        value_of = {v.name: v for v in joint.inputs}
        split = split_joint(joint, len(specs), n_out, [value_of[n] for n in grad_names])
        fplan, fexec = build_executor(split.forward, self.backend, self.arena, self.reorder, autotune=self.autotune)
        bplan, bexec = build_executor(split.backward, self.backend, self.arena, self.reorder, autotune=self.autotune)
        forward_fn, backward_fn = GraphFunction(split.forward, fexec), GraphFunction(split.backward, bexec)
        forward_fn.vjp = make_vjp(split, backward_fn)
        t3 = time.perf_counter()
        # the report describes the whole step: the joint graph, planned as one (forward and backward together)
        jplan = plan_memory(joint, reorder=False, prefix_views=False) if self.arena else None
        if remat is not None:
            remat_summary = remat.summary()
        report = make_report(self.model, self.backend, joint, jplan, specs, rows, (t0, t1, t2, t3), [fexec, bexec],
                             self.autotune)
        report["parts"] = {"forward": _part_summary(split.forward, fplan),
                           "backward": _part_summary(split.backward, bplan),
                           "saved_for_backward": saved_bytes_by_op(joint)}
        report["saved_for_backward"] = saved_bytes_by_op(joint)
        if remat is not None:
            report["remat"] = remat_summary
        compiled = _Compiled(joint, jplan, fexec, report)
        compiled.function = forward_fn
        compiled.state = [named[v.name] for v in split.forward.inputs if v.kind in ("param", "buffer")]
        compiled.state_targets = [named[n] for n in split.forward.meta.get("state_outputs", [])]
        return compiled

    # --- calling ---------------------------------------------------------------------------------------------
    def __call__(self, *inputs: Any) -> Any:
        compiled = self.compile_for(*inputs)
        if compiled.function is not None:
            return self._call_training(compiled, inputs)
        ex = compiled.executor
        outs = ex.run(*(x.data if isinstance(x, Tensor) else x for x in inputs))
        if self.backend.device != "cpu" and not any(self.backend.is_native(_data(x)) for x in inputs):
            outs = ex.fetch(outs)  # host in, host out: the results are copied back once
        return _structure(compiled.graph, [Tensor(o) for o in outs])

    def _call_training(self, compiled: _Compiled, inputs: tuple) -> Any:
        fn = compiled.function
        xs = [x if isinstance(x, Tensor) else Tensor(x if device_of(x) else np.asarray(x)) for x in inputs]
        if self.backend.device != "cpu":  # the call_graph primitive runs where the parameters are
            xs = [x.to(self.backend.device) for x in xs]
        outs = fn(*xs, *compiled.state)
        n_out = fn.graph.meta["n_outputs"]
        for target, new in zip(compiled.state_targets, outs[n_out:]):
            target.data = new.data  # running statistics: the graph's state outputs
        return _structure(fn.graph, list(outs[:n_out]))

    def check(self, *inputs: Any, rtol: float = 1e-4) -> dict[str, float]:
        """Run the eager model and the compiled one on ``inputs``; record and return the max differences."""
        from engine.autograd import no_grad

        with no_grad():  # the eager model runs where its parameters are: this backend's device
            eager = self.model(*((x if isinstance(x, Tensor) else Tensor(np.asarray(x))).to(self.backend.device)
                                 for x in inputs))
        got = self(*inputs)
        pairs = zip([eager] if isinstance(eager, Tensor) else eager, [got] if isinstance(got, Tensor) else got)
        abs_d = rel_d = 0.0
        ok = True
        for e, c in pairs:
            e64, c64 = e.host().astype(np.float64), c.host().astype(np.float64)
            d = np.abs(e64 - c64)
            scale = float(np.abs(e64).max(initial=0.0))
            abs_d = max(abs_d, float(d.max(initial=0.0)))
            rel_d = max(rel_d, float(d.max(initial=0.0)) / max(scale, 1e-30))
            # rtol per element, plus rtol of the output's magnitude for elements near zero
            ok = ok and bool(np.all(d <= rtol * np.abs(e64) + rtol * scale))
        result = {"max_abs_diff": abs_d, "max_diff_over_max_abs": rel_d, "allclose": ok, "rtol": rtol}
        self._last.report["check"] = result
        return result

    # --- inspection ------------------------------------------------------------------------------------------
    @property
    def graph(self) -> Graph:
        return self._require().graph

    @property
    def report(self) -> CompileReport:
        return self._require().report

    @property
    def compiled(self) -> _Compiled:
        """The current compilation: ``.graph``, ``.plan``, ``.executor`` (its ``.arena``), ``.report``."""
        return self._require()

    @property
    def plan(self) -> MemoryPlan | None:
        return self._require().plan

    def _require(self) -> _Compiled:
        if self._last is None:
            raise RuntimeError("CompiledModule: not compiled yet; call it (or compile_for) with example inputs")
        return self._last

    def render(self, path: str, **kwargs: Any) -> Any:
        """Draw the optimized graph (delegates to :func:`graph.render.render`)."""
        from .render import render

        return render(self.graph, path, **kwargs)

    def render_memory(self, path: str, **kwargs: Any) -> Any:
        """Draw the memory plan (arena offset vs step; delegates to :func:`graph.render.render_memory_plan`)."""
        from .render import render_memory_plan

        return render_memory_plan(self._require().plan, path, **kwargs)

    def __repr__(self) -> str:
        shapes = [[list(s) for s, _ in k[0]] for k in self._cache]
        return f"CompiledModule({type(self.model).__name__}, backend={self.backend.name!r}, compiled for {shapes})"


def _data(x: Any) -> Any:
    return x._data if isinstance(x, Tensor) else x


def _structure(g: Graph, tensors: list[Tensor]) -> Any:
    tensors = tensors[:g.meta.get("n_outputs", len(tensors))]
    structure = g.meta.get("output_structure", "single")
    if structure == "single":
        return tensors[0]
    return list(tensors) if structure == "list" else tuple(tensors)


def _part_summary(g: Graph, plan: MemoryPlan | None) -> dict[str, Any]:
    return {"nodes": len(g.nodes), "inputs": len(g.inputs), "outputs": len(g.outputs),
            "arena_bytes": plan.arena_bytes if plan is not None else 0, "flops": g.stats()["flops"]}


def _describe_kernel(backend: Backend, node: Any) -> tuple[str, str | None]:
    """What runs a node: the kernel's qualified name and the backend's algorithm note when it gives one (a kernel
    attribute ``algorithm``: a string, or a callable of the node's input specs and attrs), else None."""
    try:
        k = kernel_for(backend, node)
    except NotImplementedError:
        return "<missing kernel>", None
    desc = f"{getattr(k, '__module__', '?')}.{getattr(k, '__qualname__', getattr(k, '__name__', '?'))}"
    algo = getattr(k, "algorithm", None)
    if callable(algo):
        try:
            algo = algo(tuple(v.spec for v in node.inputs), **node.attrs)
        except Exception as e:  # a broken note must not break compilation, but it is shown, not dropped
            algo = f"<algorithm note failed: {type(e).__name__}: {e}>"
    return desc, algo or None


def compile(model: Any, *example_inputs: Any, backend: str | Backend | None = None, passes: Any = None,  # noqa: A001
            arena: bool = True, reorder: bool = True, abstract: bool = True, check: bool = False,
            memory_budget: int | float | None = None, autotune: bool = False,
            layout: str | int | None = None) -> CompiledModule:
    """Compile ``model`` for ``example_inputs`` (Tensors, arrays or :class:`engine.Spec`).

    ``backend``: the kernel backend, by default the active one (``engine.active_backend()``, as in eager mode:
    numba when it is installed). ``passes``: a pipeline name (see ``graph.passes.PIPELINES``), a list of passes,
    or None for the default of the model's mode (``"inference"`` in eval mode, ``"training"`` in train mode).
    ``abstract``: trace with shape rules only (no kernel time). ``arena``: run inside one planned arena. ``check``:
    also run the eager model on the example inputs and record the max difference in ``report["check"]``.
    ``memory_budget`` (train mode: bytes, or a fraction <= 1 of the plan without recomputation): recompute forward
    values in the backward until the planned peak of the whole step fits (graph/remat.py). ``autotune``: the
    backend may time candidate algorithms per shape (numba conv) instead of using its heuristic; the report shows
    the measurements. ``layout``: ``"auto"`` (channel-blocked values where the backend runs them by default),
    ``"blocked"``, ``"nchw"`` or a block size; None reads ``CONVGRAPH_LAYOUT`` (graph/passes/layout.py; train mode:
    graph/passes/train_layout.py).
    """
    cm = CompiledModule(model, backend, passes, arena=arena, reorder=reorder, abstract=abstract,
                        memory_budget=memory_budget, autotune=autotune, layout=layout)
    cm.compile_for(*example_inputs)
    if check:
        cm.check(*example_inputs)
    return cm
