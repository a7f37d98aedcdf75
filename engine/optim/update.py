"""``optimizer_update``: one optimizer step of one parameter as a primitive, so a compiled training step
(``graph.compile_step``) holds its updates as graph nodes.

``optimizer_update(p, g, *state, lr, step; rule, hyper, keys) -> (p', *state', step')``: ``rule`` is the
Optimizer class whose ``update_arrays`` defines the step (the same code eager ``optimizer.step()`` runs),
``hyper`` its group's hyper-parameters as sorted ``(name, value)`` pairs, ``keys`` the names of the state arrays.
The learning rate and the step count are inputs, not attributes, so schedulers keep working on a compiled step.
Outputs may be the inputs' own arrays (the executor writes parameters and state in place).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..primitive import OTHER, Cost, Spec, fail, primitive

optimizer_update_p = primitive("optimizer_update", OTHER, multiple_results=True)


@optimizer_update_p.def_shape
def _update_shape(p: Spec, g: Spec, *rest: Spec, rule: type, hyper: tuple, keys: tuple[str, ...]) -> tuple[Spec, ...]:
    name = f"optimizer_update[{rule.__name__}]"
    if len(rest) != len(keys) + 2:
        fail(name, "expects p, g, one array per state key, lr and step", inputs=2 + len(rest), keys=keys)
    if g.shape != p.shape:
        fail(name, "the gradient must have the parameter's shape", param=list(p.shape), grad=list(g.shape))
    for k, s in zip(keys, rest):
        if s.shape != p.shape:
            fail(name, f"state '{k}' must have the parameter's shape", param=list(p.shape), state=list(s.shape))
    lr, step = rest[-2:]
    if lr.shape != () or step.shape != ():
        fail(name, "lr and step must be scalars", lr=list(lr.shape), step=list(step.shape))
    return (p, *rest[:len(keys)], step)


@optimizer_update_p.def_cost
def _update_cost(ins: tuple[Spec, ...], outs: tuple[Spec, ...], **attrs: Any) -> Cost:
    n = ins[0].size
    return Cost(0, 10 * n, sum(s.nbytes for s in ins), sum(s.nbytes for s in outs))


def update_kernel(p: np.ndarray, g: np.ndarray, *rest: np.ndarray, out: tuple[np.ndarray, ...], rule: type,
                  hyper: tuple, keys: tuple[str, ...]) -> None:
    """The reference kernel (any backend whose arrays are numpy arrays can register it): copy the inputs into the
    outputs unless they are the same arrays, then run the rule's in-place update on the outputs."""
    for src, dst in zip((p, *rest[:len(keys)], rest[-1]), out):
        if src is not dst:
            np.copyto(dst, src)
    p_out, *state_out, step_out = out
    state: dict[str, Any] = dict(zip(keys, state_out))
    state["step"] = step_out
    group = dict(hyper)
    group["lr"] = float(rest[-2])
    rule.update_arrays(p_out, g.astype(p.dtype, copy=False), state, group)


__all__ = ["optimizer_update_p", "update_kernel"]
