"""cuda kernels of ``optimizer_update`` (engine/optim/update.py): one elementwise pass per parameter for each
optimizer rule of engine.optim (SGD, Adam/AdamW, RMSprop, Adagrad), the same arithmetic as its
``update_arrays`` with the state arrays read from the inputs and written to the outputs (which may be the same
arrays: each element is read before it is written). The learning rate and the step count stay on the device; a
second one-thread launch advances the step after the update has read it (launches on one stream run in order).
A rule this backend does not know (a user's optimizer class) fails by name."""

from __future__ import annotations

import math
from typing import Any

from numba import cuda

from engine.optim import SGD, Adagrad, Adam, RMSprop

from .launch import grid
from .table import backend
from .views import reshaped


@cuda.jit(device=True)
def _sqrt(v):
    return math.sqrt(v) if v >= 0 else math.nan  # as np.sqrt (a centred RMSprop variance can round below 0)


@cuda.jit
def sgd1(p, g, buf, lr, step, p_out, buf_out, momentum, dampening, wd, nesterov, maximize):
    first = step[0] == 0
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        d = -g[i] if maximize else g[i]
        if wd != 0:
            d = d + wd * p[i]
        if momentum != 0:
            b = d if first else momentum * buf[i] + (1 - dampening) * d
            buf_out[i] = b
            d = d + momentum * b if nesterov else b
        p_out[i] = p[i] - lr[0] * d


@cuda.jit
def adam1(p, g, m, v, vmax, lr, step, p_out, m_out, v_out, vmax_out, b1, b2, eps, wd, decoupled, amsgrad, maximize):
    t = step[0] + 1
    step_size = lr[0] / (1 - b1 ** t)
    bc2 = math.sqrt(1 - b2 ** t)
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        d = -g[i] if maximize else g[i]
        w = p[i]
        if wd != 0:
            if decoupled:
                w = w * (1 - lr[0] * wd)
            else:
                d = d + wd * w
        mi = m[i] + (1 - b1) * (d - m[i])
        vi = v[i] * b2 + (1 - b2) * d * d
        m_out[i], v_out[i] = mi, vi
        if amsgrad:
            vi = max(vmax[i], vi)
            vmax_out[i] = vi
        p_out[i] = w - step_size * (mi / (math.sqrt(vi) / bc2 + eps))


@cuda.jit
def rmsprop1(p, g, sq, ga, buf, lr, step, p_out, sq_out, ga_out, buf_out, alpha, eps, wd, momentum, centered,
             maximize):
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        d = -g[i] if maximize else g[i]
        if wd != 0:
            d = d + wd * p[i]
        s = sq[i] * alpha + (1 - alpha) * d * d
        sq_out[i] = s
        if centered:
            a = ga[i] + (1 - alpha) * (d - ga[i])
            ga_out[i] = a
            avg = _sqrt(s - a * a) + eps
        else:
            avg = _sqrt(s) + eps
        if momentum > 0:
            b = buf[i] * momentum + d / avg
            buf_out[i] = b
            p_out[i] = p[i] - lr[0] * b
        else:
            p_out[i] = p[i] - lr[0] * (d / avg)


@cuda.jit
def adagrad1(p, g, acc, lr, step, p_out, acc_out, eps, wd, lr_decay, maximize):
    clr = lr[0] / (1 + step[0] * lr_decay)  # step[0] + 1 is this step's count
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        d = -g[i] if maximize else g[i]
        if wd != 0:
            d = d + wd * p[i]
        s = acc[i] + d * d
        acc_out[i] = s
        p_out[i] = p[i] - clr * (d / (math.sqrt(s) + eps))


@cuda.jit
def advance_step(step, out):
    if cuda.grid(1) == 0:
        out[0] = step[0] + 1


def _flat(a: Any) -> Any:
    return reshaped(a, (a.size,))


def _sgd(p, g, st, st_out, lr, step, p_out, h):
    buf = st.get("momentum_buffer", p)
    sgd1[grid(p.size)](p, g, buf, lr, step, p_out, st_out.get("momentum_buffer", p_out), float(h["momentum"]),
                       float(h["dampening"]), float(h["weight_decay"]), bool(h["nesterov"]), bool(h["maximize"]))


def _adam(p, g, st, st_out, lr, step, p_out, h):
    b1, b2 = (float(b) for b in h["betas"])
    vmax, vmax_out = st.get("max_exp_avg_sq", p), st_out.get("max_exp_avg_sq", p_out)
    adam1[grid(p.size)](p, g, st["exp_avg"], st["exp_avg_sq"], vmax, lr, step, p_out, st_out["exp_avg"],
                        st_out["exp_avg_sq"], vmax_out, b1, b2, float(h["eps"]), float(h["weight_decay"]),
                        bool(h.get("decoupled_weight_decay", False)), bool(h["amsgrad"]), bool(h["maximize"]))


def _rmsprop(p, g, st, st_out, lr, step, p_out, h):
    rmsprop1[grid(p.size)](p, g, st["square_avg"], st.get("grad_avg", p), st.get("momentum_buffer", p), lr, step,
                           p_out, st_out["square_avg"], st_out.get("grad_avg", p_out),
                           st_out.get("momentum_buffer", p_out), float(h["alpha"]), float(h["eps"]),
                           float(h["weight_decay"]), float(h["momentum"]), bool(h["centered"]), bool(h["maximize"]))


def _adagrad(p, g, st, st_out, lr, step, p_out, h):
    adagrad1[grid(p.size)](p, g, st["sum"], lr, step, p_out, st_out["sum"], float(h["eps"]),
                           float(h["weight_decay"]), float(h["lr_decay"]), bool(h["maximize"]))


# keyed by the rule's update function, so a subclass that redefines the update is not mistaken for its parent
_RULES = {SGD.update_arrays: _sgd, Adam.update_arrays: _adam, RMSprop.update_arrays: _rmsprop,
          Adagrad.update_arrays: _adagrad}


@backend.register("optimizer_update")
def optimizer_update(p: Any, g: Any, *rest: Any, out: tuple, rule: type, hyper: tuple, keys: tuple[str, ...]) -> None:
    run = _RULES.get(rule.update_arrays)
    if run is None:
        raise NotImplementedError(f"backend 'cuda' has no optimizer_update kernel for {rule.__name__} (its "
                                  f"update_arrays is host code); known rules: SGD, Adam, AdamW, RMSprop, Adagrad")
    lr, step = reshaped(rest[-2], (1,)), reshaped(rest[-1], (1,))
    p_out, *state_out, step_out = out
    if p.size:
        st = {k: _flat(a) for k, a in zip(keys, rest[:len(keys)])}
        st_out = {k: _flat(a) for k, a in zip(keys, state_out)}
        run(_flat(p), _flat(g), st, st_out, lr, step, _flat(p_out), dict(hyper))
    advance_step[1, 1](step, reshaped(step_out, (1,)))
