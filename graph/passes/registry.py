"""Pass registration: each pass declares which passes must run before it and which graph modes it accepts.

    @graph_pass("fuse_epilogue", requires=("fold_bn",), after=("lower_1x1",), modes=("inference",))
    def fuse_epilogue(graph: Graph) -> PassResult: ...

:func:`check_pipeline` checks a list of passes when it is defined (every ``requires`` pass earlier in the list,
every ``after`` pass the list holds earlier too) and against a graph before any pass runs (every pass accepts the
graph's mode); calling a registered pass on a graph of a mode it does not accept raises the same error.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import NamedTuple

from ..ir import Graph

# "joint": a training graph that holds its own backward pass as nodes (compile() in train mode, compile_step)
MODES = ("inference", "training", "joint")


class PassResult(NamedTuple):
    graph: Graph
    changed: bool


Pass = Callable[[Graph], PassResult]


class GraphPass:
    """A registered pass: ``fn`` plus what it needs. Called like ``fn``; a plain function is a pass too."""

    def __init__(self, fn: Pass, name: str, requires: tuple[str, ...], after: tuple[str, ...], modes: tuple[str, ...],
                 why: str):
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.name = name
        self.requires = requires
        self.after = after
        self.modes = modes
        self.why = why

    def check_mode(self, graph: Graph) -> None:
        mode = graph_mode(graph)
        if mode not in self.modes:
            hint = "call model.eval() before trace/compile" if mode != "inference" else "trace in train mode"
            shown = "training mode (a joint forward+backward graph)" if mode == "joint" else f"{mode} mode"
            raise ValueError(f"{self.name}: the graph was traced in {shown} and this pass runs only on "
                             f"{' / '.join(self.modes)} graphs ({self.why}); {hint}, or leave {self.name} out "
                             f"of the passes")

    def __call__(self, graph: Graph) -> PassResult:
        self.check_mode(graph)
        return self.fn(graph)

    def __repr__(self) -> str:
        return f"graph_pass({self.name!r}, requires={self.requires}, after={self.after}, modes={self.modes})"


PASSES: dict[str, GraphPass] = {}


def graph_pass(name: str, *, requires: Sequence[str] = (), after: Sequence[str] = (), modes: Sequence[str] = MODES,
               why: str = "") -> Callable[[Pass], GraphPass]:
    """Register ``fn`` as pass ``name``. ``requires``: passes that must run earlier in any pipeline containing it;
    ``after``: passes that, when a pipeline has them too, must run earlier; ``modes``: the graph modes it accepts
    ("inference", "training", "joint"); ``why``: the reason a mode is refused."""
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise ValueError(f"graph_pass {name!r}: modes must be a non-empty subset of {MODES} (got {tuple(modes)})")

    def register(fn: Pass) -> GraphPass:
        if name in PASSES:
            raise ValueError(f"graph_pass {name!r} is already registered (by {PASSES[name].fn.__module__})")
        PASSES[name] = GraphPass(fn, name, tuple(requires), tuple(after), tuple(modes), why)
        return PASSES[name]

    return register


def graph_mode(graph: Graph) -> str:
    if graph.meta.get("joint"):
        return "joint"
    return "training" if graph.meta.get("training") else "inference"


def pass_name(p: Pass) -> str:
    return p.name if isinstance(p, GraphPass) else p.__name__


def check_pipeline(passes: Sequence[Pass], graph: Graph | None = None) -> None:
    """Raise ValueError unless every pass's required passes run before it (and, given ``graph``, every pass
    accepts the graph's mode). Plain functions declare nothing and are always accepted."""
    names = [pass_name(p) for p in passes]
    for i, p in enumerate(passes):
        if not isinstance(p, GraphPass):
            continue
        missing = [r for r in p.requires if r not in names[:i]]
        if missing:
            raise ValueError(f"pipeline {names}: {p.name} (position {i}) requires {missing} to run before it")
        late = [a for a in p.after if a in names[i + 1:]]
        if late:
            raise ValueError(f"pipeline {names}: {late} must run before {p.name} (position {i}), not after it")
        if graph is not None:
            p.check_mode(graph)
