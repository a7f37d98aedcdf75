"""Concatenations stored once: a channel concat whose inputs are a prefix of a longer concat's inputs is a view of
the longer one's storage (its first channels), not a copy of its own.

DenseNet's dense layer ``l`` reads ``concat(x0, f1, ..., f_{l-1})`` and the next layer reads the same list plus
``f_l``. In a training step every one of those concatenations is kept for its BatchNorm's backward, so a block
of ``L`` layers keeps ``O(L^2)`` channels of copies of the same feature maps. Here they form a *family*: the
longest concat (the *root*) gets the storage, and every shorter one (a *member*) is its channel prefix, a view
with the root's strides (in NCHW with batch > 1 a strided view: batch stride = root channels x H x W). A member's
concat kernel writes its inputs into that view, i.e. the same bytes the root (or a longer member) writes there.

A member is only made a view when every reader of it accepts such a strided array: the kernels of the ops in
:data:`STRIDED_READERS` do on every host backend. The root is an ordinary contiguous array.
"""

from __future__ import annotations

from typing import Any

from .ir import Graph, Node, Value

# ops whose kernels read an input that is a channel prefix of a larger NCHW array (numpy: any strides; numba:
# batch_norm's kernels read the contiguous parent, backends/numba/norm.py)
STRIDED_READERS = frozenset({"batch_norm_train", "batch_norm_train_grad", "batch_norm_apply"})


def _concat_key(n: Node) -> tuple[int, ...] | None:
    if n.op.name != "concat" or n.attrs.get("axis") != 1 or len(n.outputs) != 1 or n.outputs[0].ndim < 2:
        return None
    return tuple(id(v) for v in n.inputs)


def prefix_families(graph: Graph, intermediates: set[int]) -> dict[Value, Value]:
    """``{member: root}``: each member concat's output is the first channels of its root's (see the module
    docstring). Roots and members are intermediates (not graph inputs or outputs) of one dtype."""
    concats: dict[tuple[int, ...], Node] = {}
    for n in graph.nodes:
        key = _concat_key(n)
        if key is not None and id(n.outputs[0]) in intermediates:
            concats.setdefault(key, n)
    prefix_of: dict[Value, Value] = {}
    assigned: set[int] = set()
    for key, n in sorted(concats.items(), key=lambda kv: -len(kv[0])):
        if id(n) in assigned:
            continue
        root = n.outputs[0]
        for p in range(1, len(key)):
            m = concats.get(key[:p])
            if m is None or id(m) in assigned:
                continue
            v = m.outputs[0]
            if v.dtype == root.dtype and v.shape[2:] == root.shape[2:] and v.shape[0] == root.shape[0] and \
                    all(u.op.name in STRIDED_READERS for u in v.users):
                prefix_of[v] = root
                assigned.add(id(m))
        assigned.add(id(n))
    return prefix_of


def merge_prefix_buffers(buffers: list, buf_of: dict[int, Any], prefix_of: dict[Value, Value]) -> list:
    """Fold each member's buffer (:class:`graph.memory.Buffer`) into its root's: one allocation of the root's size,
    live from the first write of any of them to the last read of any."""
    gone: set[int] = set()
    for v, root in prefix_of.items():
        b, rb = buf_of[id(v)], buf_of[id(root)]
        rb.values.extend(b.values)
        rb.start, rb.end = min(rb.start, b.start), max(rb.end, b.end)
        for x in b.values:
            buf_of[id(x)] = rb
        gone.add(id(b))
    return [b for b in buffers if id(b) not in gone]


def prefix_view(backend_view, arena, offset: int, v: Value, root: Value):  # noqa: ANN001, ANN201
    """Member ``v``'s array: the first ``v.shape[1]`` channels of ``root``'s array at ``offset`` in ``arena``."""
    return backend_view(arena, offset, root.shape, root.dtype)[:, :v.shape[1]]
