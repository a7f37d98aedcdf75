"""Adagrad with learning-rate decay and L2 weight decay (torch.optim.Adagrad's update)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from .optimizer import Optimizer


class Adagrad(Optimizer):
    """s <- s + g^2;  p <- p - lr / (1 + (t - 1) lr_decay) * g / (sqrt(s) + eps)."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10, *, maximize: bool = False):
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if lr_decay < 0.0:
            raise ValueError(f"Invalid lr_decay value: {lr_decay}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if initial_accumulator_value < 0.0:
            raise ValueError(f"Invalid initial_accumulator_value value: {initial_accumulator_value}")
        if eps < 0.0:
            raise ValueError(f"Invalid epsilon value: {eps}")
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, eps=eps,
                                      maximize=maximize))
        # like torch, the accumulator exists from construction on (it shows up in state_dict before any step)
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p] = {"step": 0,
                                 "sum": np.full(p.shape, group["initial_accumulator_value"], p.dtype)}

    @staticmethod
    def init_state(p: np.ndarray, state: dict[str, Any], group: dict[str, Any]) -> None:
        state.update(step=0, sum=np.full(p.shape, group["initial_accumulator_value"], p.dtype))

    @staticmethod
    def update_arrays(p: np.ndarray, grad: np.ndarray, state: dict[str, Any], group: dict[str, Any]) -> None:
        if group["maximize"]:
            grad = -grad
        state["step"] += 1
        if group["weight_decay"] != 0:
            grad = grad + group["weight_decay"] * p
        clr = group["lr"] / (1 + (state["step"] - 1) * group["lr_decay"])
        state["sum"] += grad * grad
        std = np.sqrt(state["sum"]) + group["eps"]
        p += -clr * (grad / std)
