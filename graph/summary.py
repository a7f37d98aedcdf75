"""A torchinfo-style model summary that is honest about units.

``summary(model, input_shape, depth=k)`` traces the model on shapes only (no kernel runs, so ResNet-50 at 224² is
fast), asks every node's primitive for its cost rule (``prim.cost(in_specs, out_specs, **attrs)``) and groups the
nodes by the dotted module path recorded in ``node.meta["module"]``, cut to ``depth`` components. Nothing here
knows how a conv is computed: MACs and FLOPs come from the primitive table, output sizes from the shape rules and
"drops N input rows/columns" from :func:`engine.ops.conv.dropped_pixels`.

Units: MACs are multiply-accumulates; FLOPs count multiplies and adds separately, so FLOPs = 2 x MACs for conv
and linear (plus one add per output element for a bias, and the elementwise work of the other ops, as each cost
rule states). Activation bytes are the bytes of every tensor the row's primitives write.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from engine.ops.conv import dropped_pixels
from engine.primitive import CONV, Cost, Spec

from .ir import Graph, Node
from .trace import trace

__all__ = ["SummaryRow", "Summary", "summary", "summarize_graph", "module_groups", "dropped_rows_cols", "fmt_count",
           "fmt_bytes", "trace_shapes"]


# --- sliding windows ------------------------------------------------------------------------------------------
def _window(node: Node) -> tuple[tuple[int, int], tuple[int, int], tuple, tuple[int, int]] | None:
    """(kernel, stride, padding pairs, dilation) of a sliding-window node (conv or pool), else None."""
    attrs, name = node.attrs, node.op.name
    if "stride" not in attrs or name.endswith("_grad"):
        return None
    if node.op.kind == CONV or name == "fused_conv2d":
        kernel = tuple(node.inputs[1].shape[2:4])
    elif "kernel" in attrs:
        kernel = tuple(attrs["kernel"])
    else:
        return None
    pads = attrs.get("padding", ((0, 0), (0, 0)))
    pads = tuple(p if isinstance(p, (tuple, list)) else (p, p) for p in pads)
    return kernel, tuple(attrs["stride"]), pads, tuple(attrs.get("dilation", (1, 1)))


def dropped_rows_cols(node: Node, data_only: bool = False) -> tuple[int, int]:
    """(rows, columns) at the bottom/right of the padded input that the stride leaves unused, for conv and pool
    nodes ((0, 0) for other ops and in ceil mode, where a partial window covers them). ``data_only`` leaves out
    the dropped rows/columns that are padding, counting only real input lost."""
    win = _window(node)
    if win is None or node.inputs[0].ndim != 4 or node.attrs.get("ceil_mode"):
        return 0, 0
    kernel, stride, pads, dilation = win
    h, w = node.inputs[0].shape[2:]
    out = []
    for i, size in enumerate((h, w)):
        n = dropped_pixels(size, kernel[i], stride[i], pads[i], dilation[i])
        out.append(max(n - pads[i][1], 0) if data_only else n)
    return out[0], out[1]


# --- formatting -------------------------------------------------------------------------------------------------
def fmt_count(n: float, unit: str = "") -> str:
    """1234567 -> '1.23M' (decimal prefixes: K = 10^3, M = 10^6, G = 10^9)."""
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{prefix}{unit}"
    return f"{int(n)}{unit}"


def fmt_bytes(n: float) -> str:
    """Binary units: KiB = 2^10 bytes, MiB = 2^20 bytes."""
    for scale, prefix in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {prefix}"
    return f"{int(n)} B"


# --- the summary ------------------------------------------------------------------------------------------------
@dataclass
class SummaryRow:
    """One row: a module at the requested depth (or a run of functional ops called outside any module)."""

    name: str  # dotted module path; "(relu)" style for ops called directly in a parent's forward
    layer: str  # module class name, or the primitive names for functional rows
    output_shape: tuple[int, ...]
    params: int
    macs: int
    flops: int
    activation_bytes: int
    depth: int
    ops: list[str] = field(default_factory=list)  # primitives in the row, in schedule order
    dropped_rows: int = 0  # max over the row's conv/pool nodes of input rows the stride leaves unused
    dropped_cols: int = 0
    dropped_data: bool = False  # some dropped rows/columns are real input, not just padding
    reused: bool = False  # a module called again: its parameters were counted at its first call

    @property
    def note(self) -> str:
        parts = []
        if self.dropped_rows or self.dropped_cols:
            parts.append(f"stride drops {self.dropped_rows} input rows / {self.dropped_cols} columns"
                         + ("" if self.dropped_data else " (padding only)"))
        if self.reused:
            parts.append("reused module: params counted at its first call")
        return "; ".join(parts)


@dataclass
class Summary(Sequence):
    """The rows plus totals. Behaves as the list of rows; ``str()`` is the rendered table."""

    rows: list[SummaryRow]
    input_shape: tuple[int, ...]
    total_params: int
    total_macs: int
    total_flops: int
    activation_bytes: int
    input_bytes: int
    param_bytes: int
    depth: int
    model_name: str = "Model"

    def __getitem__(self, i):  # type: ignore[override]
        return self.rows[i]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[SummaryRow]:
        return iter(self.rows)

    def row(self, name: str) -> SummaryRow:
        """The first row with this module path."""
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(f"summary has no row '{name}'; rows: {[r.name for r in self.rows]}")

    @property
    def flagged(self) -> list[SummaryRow]:
        return [r for r in self.rows if r.dropped_rows or r.dropped_cols]

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "rows"}
        d["rows"] = [asdict(r) | {"note": r.note} for r in self.rows]
        return d

    def table(self):
        """A rich Table of the rows with totals and units in the caption."""
        from rich.table import Table

        t = Table(title=f"{self.model_name} — input {list(self.input_shape)}, depth {self.depth}", show_footer=True)
        t.add_column("Layer (type)", footer="Total")
        t.add_column("Output shape")
        t.add_column("Params", justify="right", footer=f"{self.total_params:,}")
        t.add_column("MACs", justify="right", footer=fmt_count(self.total_macs))
        t.add_column("FLOPs", justify="right", footer=fmt_count(self.total_flops))
        t.add_column("Activations", justify="right", footer=fmt_bytes(self.activation_bytes))
        t.add_column("Note")
        for r in self.rows:
            indent = "  " * max(r.depth - 1, 0)
            t.add_row(f"{indent}{r.name} ({r.layer})", str(list(r.output_shape)), f"{r.params:,}",
                      fmt_count(r.macs), fmt_count(r.flops), fmt_bytes(r.activation_bytes), r.note)
        t.caption = (f"Params: {self.total_params:,} ({fmt_bytes(self.param_bytes)}) · "
                     f"MACs: {self.total_macs:,} ({fmt_count(self.total_macs)}) · "
                     f"FLOPs: {self.total_flops:,} ({fmt_count(self.total_flops)}; FLOPs = 2 × MACs for conv/linear, "
                     "plus bias and elementwise ops) · "
                     f"input {fmt_bytes(self.input_bytes)}, activations written {fmt_bytes(self.activation_bytes)} · "
                     "K/M/G = 10^3/10^6/10^9, KiB/MiB = 2^10/2^20 bytes")
        return t

    def __str__(self) -> str:
        from rich.console import Console

        console = Console(width=160, record=True, force_terminal=False, color_system=None)
        with console.capture() as cap:
            console.print(self.table())
        return cap.get()

    def print(self) -> None:
        from rich.console import Console

        console = Console()
        if not console.is_terminal:
            console = Console(width=160)
        console.print(self.table())


def trace_shapes(model: Any, input_shape: Sequence[int], dtype: str = "float32") -> Graph:
    """Trace ``model`` (a Module, or a plain function) on an input of ``input_shape`` without running kernels,
    a Module in eval mode."""
    was_training = getattr(model, "training", False)  # plain functions have no mode
    if was_training:
        model.eval()
    try:
        return trace(model, Spec(tuple(input_shape), dtype), abstract=True)
    finally:
        if was_training:
            model.train(True)


def _cut(path: str, depth: int) -> str:
    return ".".join(path.split(".")[:depth]) if path else ""


def module_groups(nodes: Iterable[Node], depth: int) -> list[tuple[str, list[Node]]]:
    """Consecutive runs of nodes with the same module path cut to ``depth`` (a module's call is contiguous in the
    schedule, so a run is one call)."""
    out: list[tuple[str, list[Node]]] = []
    for node in nodes:
        key = _cut(node.module, depth)
        if out and out[-1][0] == key:
            out[-1][1].append(node)
        else:
            out.append((key, [node]))
    return out


def _param_counter() -> Callable[[list[Node]], int]:
    """``count(nodes)`` -> the parameters a row's nodes read, each parameter counted once, at its first reader.

    A parameter belongs to the module whose forward reads it (a conv's weight to the conv, cut to the row's depth),
    so a parent whose own forward only calls functional ops between its children owns none of its children's
    parameters, and a reused module's parameters are counted at its first call."""
    seen: set[int] = set()

    def count(nodes: list[Node]) -> int:
        total = 0
        for v in (v for n in nodes for v in n.inputs if v.kind == "param"):
            if id(v) not in seen:
                seen.add(id(v))
                total += v.spec.size
        return total

    return count


def _modules(model: Any) -> dict[str, Any]:
    """Module path -> module; none for a plain function (or no model)."""
    return dict(model.named_modules()) if hasattr(model, "named_modules") else {}


def summarize_graph(graph: Graph, model: Any = None, depth: int = 3) -> Summary:
    """Rows for an already-traced graph (``model`` supplies module class names and parameter counts)."""
    modules = _modules(model)
    count_params = _param_counter()
    paths = {n.module for n in graph.nodes}
    parents = {p for p in paths if p and any(q.startswith(p + ".") for q in paths)}  # modules with children that ran
    rows: list[SummaryRow] = []
    seen_keys: set[str] = set()
    for key, nodes in module_groups(graph.nodes, depth):
        cost = Cost()
        act = 0
        rows_cols = [(0, 0)]
        dropped_data = False
        for n in nodes:
            cost = cost + n.cost()
            act += sum(v.nbytes for v in n.outputs)
            rows_cols.append(dropped_rows_cols(n))
            dropped_data = dropped_data or any(dropped_rows_cols(n, data_only=True))
        ops = [n.op.name for n in nodes]
        mod = modules.get(key) if key or depth == 0 else None  # key "" at depth > 0: ops called by the root
        types = {n.meta.get("module_type") for n in nodes if n.module == key} - {None}
        key_depth = len(key.split(".")) if key else 0
        # ops a container's own forward calls between its children (a pool before a branch, the final concat):
        # a functional row under it, not a second row of the container
        own_ops = key_depth < depth and key in parents and all(n.module == key for n in nodes)
        if mod is not None and not own_ops:
            name, layer = key, type(mod).__name__
        elif model is None and key and len(types) == 1 and not own_ops:  # graph only: the tracer's module type
            name, layer = key, types.pop()
        else:
            uniq = list(dict.fromkeys(ops))
            name = f"{key + '.' if key else ''}({'+'.join(uniq)})"
            layer = "functional"
            key_depth += 1 if key else 0
        rows.append(SummaryRow(
            name=name, layer=layer, output_shape=nodes[-1].outputs[0].shape,
            params=count_params(nodes), macs=cost.macs, flops=cost.flops, activation_bytes=act,
            depth=key_depth, ops=ops,
            dropped_rows=max(r for r, _ in rows_cols), dropped_cols=max(c for _, c in rows_cols),
            dropped_data=dropped_data,
            reused=layer != "functional" and key in seen_keys))
        seen_keys.add(key)
    if hasattr(model, "parameters"):
        params = [p.spec for p in model.parameters()]
    else:
        params = [v.spec for v in graph.params]
    in_specs = [v.spec for v in graph.user_inputs]
    return Summary(
        rows=rows, input_shape=in_specs[0].shape if in_specs else (), total_params=sum(p.size for p in params),
        total_macs=sum(r.macs for r in rows), total_flops=sum(r.flops for r in rows),
        activation_bytes=sum(r.activation_bytes for r in rows), input_bytes=sum(s.nbytes for s in in_specs),
        param_bytes=sum(p.nbytes for p in params), depth=depth,
        model_name=type(model).__name__ if model is not None else "Graph")


def summary(model: Any, input_shape: Sequence[int], depth: int = 3, verbose: bool = True,
            dtype: str = "float32") -> Summary:
    """Trace ``model`` on shapes only and summarize it per module, aggregated at module ``depth``.

    ``input_shape`` includes the batch dimension (torchinfo's convention); a 3-tuple is taken as (C, H, W) with
    batch 1. Returns a :class:`Summary` (a sequence of :class:`SummaryRow`); ``verbose`` also prints the table.
    """
    shape = tuple(int(d) for d in input_shape)
    if len(shape) == 3:
        shape = (1,) + shape
    s = summarize_graph(trace_shapes(model, shape, dtype), model, depth)
    if verbose:
        s.print()
    return s
