"""SGD with momentum, dampening, Nesterov and L2 weight decay (torch.optim.SGD's update, step for step)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from .optimizer import Optimizer


class SGD(Optimizer):
    """g <- g + wd p;  buf <- momentum buf + (1 - dampening) g (buf = g on the first step);
    g <- g + momentum buf (Nesterov) or buf;  p <- p - lr g."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, *, maximize: bool = False):
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov, maximize=maximize))

    def _update(self, p: Any, grad: np.ndarray, state: dict[str, Any], group: dict[str, Any]) -> None:
        self.update_arrays(p.data, grad, state, group)  # eagerly the buffer is created by the first step

    @staticmethod
    def init_state(p: np.ndarray, state: dict[str, Any], group: dict[str, Any]) -> None:
        """The state a compiled step needs up front (eager steps create the momentum buffer lazily): a zero
        buffer and a step count, whose value 0 marks the first step (buffer <- gradient)."""
        if group["momentum"] != 0:
            state.setdefault("momentum_buffer", np.zeros_like(p))
        state.setdefault("step", np.zeros((), np.float64))

    @staticmethod
    def update_arrays(p: np.ndarray, grad: np.ndarray, state: dict[str, Any], group: dict[str, Any]) -> None:
        lr, momentum, wd = group["lr"], group["momentum"], group["weight_decay"]
        if group["maximize"]:
            grad = -grad
        if wd != 0:
            grad = grad + wd * p
        first = "step" in state and state["step"] == 0
        if "step" in state:
            state["step"] += 1
        if momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = grad.copy()
            elif first:
                buf[...] = grad
            else:
                buf *= momentum
                buf += (1 - group["dampening"]) * grad
            grad = grad + momentum * buf if group["nesterov"] else buf
        p -= lr * grad
