"""Where the time goes: wall time per kernel call, attributed to the layer (module) and phase that made it.

    with engine.profile(model) as prof:
        loss = F.cross_entropy(model(x), y); loss.backward(); opt.step()
    prof.print(by="layer")   # or by="op"

Eager mode records every kernel ``bind`` runs (forward; ``backward`` for kernels inside vjp rules, attributed to
the layer whose forward made the node); a compiled graph's executor records every node (phase ``graph``, layer
from ``node.meta["module"]``). Everything inside the block that is not a kernel call (Python dispatch, tape
bookkeeping, allocation, the optimizer's Python loop) is the ``(outside kernels)`` row: block wall time minus
the sum of kernel times.

A graph executor also records each run: its nodes, its wall time and the time its kernel calls took, so
:meth:`Profile.graph_overhead` gives the executor's own cost per node (slots, outputs, the loop: everything of a
compiled run that is not a kernel call). A kernel call's time includes that kernel's Python wrapper and its numba
dispatch (bench/executor_overhead.py measures those separately).
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

OUTSIDE = "(outside kernels)"


@dataclass
class Profile:
    """Aggregated kernel times: ``(phase, layer, layer_type, op) -> [calls, seconds]``; ``wall_s`` of the block."""

    names: dict[int, str] = field(default_factory=dict)  # id(module) -> dotted path
    stats: dict[tuple[str, str, str, str], list] = field(default_factory=lambda: defaultdict(lambda: [0, 0.0]))
    wall_s: float = 0.0
    graph_runs: list = field(default_factory=lambda: [0, 0, 0.0, 0.0])  # runs, node calls, wall s, kernel s

    def record(self, phase: str, module: Any, op: str, seconds: float) -> None:
        if isinstance(module, tuple):  # (dotted path, type name): what a graph node's meta holds
            layer, ltype = module
        elif isinstance(module, str):
            layer, ltype = module, ""
        else:
            layer = self.names.get(id(module), type(module).__name__ if module is not None else "")
            ltype = type(module).__name__ if module is not None else ""
        s = self.stats[(phase, layer, ltype, op)]
        s[0] += 1
        s[1] += seconds

    def record_graph_run(self, nodes: int, wall_s: float, kernel_s: float) -> None:
        """One executor run: ``nodes`` kernel calls taking ``kernel_s`` of its ``wall_s``."""
        r = self.graph_runs
        r[0] += 1
        r[1] += nodes
        r[2] += wall_s
        r[3] += kernel_s

    def graph_overhead(self) -> dict[str, float]:
        """The compiled graphs' runs in this block: ``runs``, ``nodes`` (kernel calls), ``wall_ms``, ``kernel_ms``,
        ``outside_ms`` (executor time that was not a kernel call) and ``outside_us_per_node``."""
        runs, nodes, wall, kern = self.graph_runs
        return {"runs": runs, "nodes": nodes, "wall_ms": wall * 1e3, "kernel_ms": kern * 1e3,
                "outside_ms": (wall - kern) * 1e3, "outside_us_per_node": (wall - kern) / max(nodes, 1) * 1e6}

    @property
    def kernel_s(self) -> float:
        return sum(s for _, s in self.stats.values())

    def rows(self, by: str = "layer") -> list[dict]:
        """Rows sorted by time, grouped by ``"layer"`` (phase, layer, type, op) or ``"op"`` (phase, op); plus
        the outside-kernels row. Each: key fields, calls, ms, % of the block's wall time."""
        agg: dict[tuple, list] = defaultdict(lambda: [0, 0.0])
        for (phase, layer, ltype, op), (n, s) in self.stats.items():
            key = (phase, layer, ltype, op) if by == "layer" else (phase, op)
            agg[key][0] += n
            agg[key][1] += s
        names = ("phase", "layer", "type", "op") if by == "layer" else ("phase", "op")
        wall = max(self.wall_s, 1e-12)
        out = [dict(zip(names, k), calls=n, ms=s * 1e3, pct=100 * s / wall) for k, (n, s) in agg.items()]
        out.append({**{k: "" for k in names}, "op": OUTSIDE, "calls": 0,
                    "ms": (self.wall_s - self.kernel_s) * 1e3, "pct": 100 * (self.wall_s - self.kernel_s) / wall})
        return sorted(out, key=lambda r: -r["ms"])

    def print(self, by: str = "layer", top: int = 20, title: str = "") -> None:
        from rich.console import Console
        from rich.table import Table

        rows = self.rows(by)
        t = Table(title=f"{title} profile by {by}: wall {self.wall_s * 1e3:.1f} ms, kernels "
                        f"{self.kernel_s * 1e3:.1f} ms (top {min(top, len(rows))} of {len(rows)} rows)")
        cols = [c for c in rows[0] if c not in ("calls", "ms", "pct")] if rows else []
        for c in cols + ["calls", "ms", "% wall"]:
            t.add_column(c, justify="right" if c in ("calls", "ms", "% wall") else "left")
        for r in rows[:top]:
            t.add_row(*(str(r[c]) for c in cols), str(r["calls"]), f"{r['ms']:.2f}", f"{r['pct']:.1f}")
        Console(width=160).print(t)
        if self.graph_runs[0]:
            g = self.graph_overhead()
            Console(width=160).print(f"compiled graphs: {g['runs']} runs, {g['nodes']} kernel calls, "
                                     f"{g['wall_ms']:.2f} ms in the executor, {g['outside_ms']:.2f} ms of it outside "
                                     f"kernels = {g['outside_us_per_node']:.1f} us per node")


_active: list[Profile] = []  # running profiles, innermost last


@contextlib.contextmanager
def profile(model: Any = None) -> Iterator[Profile]:
    """Profile the block; ``model`` (a Module) names layers by their dotted path."""
    prof = Profile()
    if model is not None and hasattr(model, "named_modules"):
        for name, m in model.named_modules():
            prof.names[id(m)] = name or type(m).__name__
    _active.append(prof)
    t0 = time.perf_counter()
    try:
        yield prof
    finally:
        prof.wall_s += time.perf_counter() - t0
        _active.remove(prof)


def current() -> Profile | None:
    """The innermost running profile, or None."""
    return _active[-1] if _active else None


def active() -> bool:
    """Whether a :func:`profile` block is running (callers that loop over many kernels check once)."""
    return bool(_active)


def launcher(phase: str, module: Any, op: str, sync: Any = None) -> Any:
    """The ``launch`` hook for :meth:`engine.Backend.run`: None (call the kernel directly) unless a profile is
    running, else a function that times the kernel call as :func:`call` does. ``sync`` (a device backend's
    ``synchronize``) is called before the clock stops: device kernels run asynchronously."""
    if not _active:
        return None

    def launch(fn: Any, /, *args: Any, **kwargs: Any) -> None:
        t0 = time.perf_counter()
        fn(*args, **kwargs)
        if sync is not None:
            sync()
        _active[-1].record(phase, module, op, time.perf_counter() - t0)

    return launch


def call(phase: str, module: Any, op: str, fn: Any, /, *args: Any, **kwargs: Any) -> None:
    """``fn(*args, **kwargs)``; inside a :func:`profile` block, also timed into the innermost profile. The one
    hook every kernel call site uses (positional-only: kernel attrs may be named ``kernel``)."""
    if not _active:
        fn(*args, **kwargs)
        return
    t0 = time.perf_counter()
    fn(*args, **kwargs)
    _active[-1].record(phase, module, op, time.perf_counter() - t0)
