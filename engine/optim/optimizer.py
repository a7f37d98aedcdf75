"""Optimizer base: parameter groups, per-parameter state, zero_grad and a resumable state_dict.

Updates run under ``engine.no_grad`` and write numpy arrays in place (``param.data[...] = ...``), so a parameter
keeps its identity (modules, other optimizers and the tape still refer to the same Tensor). A parameter on a device
is updated by the ``optimizer_update`` primitive on that device's backend (its data and state are replaced by the
primitive's outputs; the Tensor is the same).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from .. import profiler as _profiler
from ..autograd import enable_grad, no_grad
from ..backend import backend_for_device, device_of, to_host
from ..tensor import Tensor
from .update import optimizer_update_p


class _Required:
    def __repr__(self) -> str:
        return "<required parameter>"


required = _Required()


class Optimizer:
    """Subclasses define ``_update(param, grad, state, group)``, which updates one parameter in place.

    ``state_dict()`` follows torch's layout: ``{"state": {index: {...}}, "param_groups": [{..., "params": [index,
    ...]}]}`` where index numbers the parameters in group order; state values are copied numpy arrays and Python
    scalars, so the dict can be saved with :func:`engine.io.save` and resumes the run exactly.
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], defaults: dict[str, Any]):
        self.defaults = defaults
        self.state: dict[Tensor, dict[str, Any]] = {}
        self.param_groups: list[dict[str, Any]] = []
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of Tensors or dicts, "
                            "but got a Tensor")
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {group[k]}" for k in sorted(group) if k != "params"]
        return "\n".join(lines) + "\n)"

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict (got {type(param_group).__name__})")
        group = dict(param_group)
        params = group["params"]
        group["params"] = [params] if isinstance(params, Tensor) else list(params)
        for p in group["params"]:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, but one of the params is {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")
        for name, default in self.defaults.items():
            if default is required and name not in group:
                raise ValueError(f"parameter group didn't specify a value of required optimization parameter {name}")
            group.setdefault(name, default)
        lr = group.get("lr")
        if isinstance(lr, (int, float)) and not 0.0 <= lr < math.inf:  # NaN fails both comparisons
            raise ValueError(f"Invalid learning rate: {lr} (must be a finite number >= 0)")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in group["params"]) or len({id(p) for p in group["params"]}) != len(group["params"]):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad = p.grad.new_tensor(np.zeros(p.grad.shape, p.grad.dtype))

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every parameter that has a gradient; ``closure`` re-evaluates and returns the loss."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        with no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    grad = p.grad.data
                    if grad.shape != p.shape:
                        raise RuntimeError(f"{type(self).__name__}.step: gradient shape {list(grad.shape)} does "
                                           f"not match parameter shape {list(p.shape)}")
                    state = self.state.setdefault(p, {})
                    if isinstance(p.data, np.ndarray):
                        _state_to_host(state)  # a model moved back from a device: its state follows
                        grad = p.grad.host().astype(p.dtype, copy=False)
                        _profiler.call("optimizer", "", f"{type(self).__name__} update", self._update, p, grad,
                                       state, group)
                    else:
                        self._update_on_device(p, state, group)
                    p.bump_version()
        return loss

    def _update_on_device(self, p: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        """One step of a parameter whose data lives on a device: the ``optimizer_update`` primitive (the same
        update as :meth:`update_arrays`) runs on that device's backend, and the state stays there."""
        backend = backend_for_device(p.device)
        self.array_state(p, state, group)
        for k, v in state.items():
            if isinstance(v, np.ndarray):
                state[k] = backend.from_host(v)
        keys = tuple(n for n in state if n != "step")
        grad = p.grad if p.grad.dtype == p.dtype else p.grad.astype(p.dtype)
        lr = backend.from_host(np.asarray(group["lr"], np.float64))
        hyper = tuple(sorted((n, v) for n, v in group.items() if n not in ("params", "lr")))
        launch = _profiler.launcher("optimizer", "", f"{type(self).__name__} update", backend.synchronize)
        new = backend.run(optimizer_update_p, (p.data, grad.data, *(state[n] for n in keys), lr, state["step"]),
                          dict(rule=type(self), hyper=hyper, keys=keys), launch=launch)
        p._data = new[0]
        state.update(zip((*keys, "step"), new[1:]))

    def array_state(self, p: Tensor, state: dict[str, Any], group: dict[str, Any]) -> dict[str, Any]:
        """Complete ``state`` (this optimizer's state of ``p``) as the ``optimizer_update`` primitive needs it:
        every array present (as :meth:`init_state` makes them) and the step count a 0-d float64 array that the
        update increments. Compiled steps and device steps read state this way; eager host steps keep theirs."""
        like = np.zeros(p.shape, p.dtype)  # init_state reads only the shape and dtype
        if not state:
            self.init_state(like, state, group)
        elif "step" not in state:  # an optimizer whose eager steps keep no count (SGD): past its first step
            self.init_state(like, state, group)
            state["step"] = 1
        step = state.get("step", 0)
        if not hasattr(step, "shape") or step.shape != ():
            state["step"] = np.asarray(float(step), np.float64)
        return state

    def _update(self, p: Tensor, grad: np.ndarray, state: dict[str, Any], group: dict[str, Any]) -> None:
        if not state:
            self.init_state(p.data, state, group)
        self.update_arrays(p.data, grad, state, group)

    # Subclasses define the update once, on arrays, in place; eager steps and the compiled update primitive
    # (engine/optim/update.py, used by graph.compile_step) both call it.
    @staticmethod
    def init_state(p: np.ndarray, state: dict[str, Any], group: dict[str, Any]) -> None:
        """Create the per-parameter state of a parameter shaped like ``p`` (before its first update)."""

    @staticmethod
    def update_arrays(p: np.ndarray, grad: np.ndarray, state: dict[str, Any], group: dict[str, Any]) -> None:
        """Update ``p`` and the arrays of ``state`` in place for one step with ``grad``."""
        raise NotImplementedError("an Optimizer subclass must define update_arrays")

    # --- state dict ------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append(packed)
        state = {index[id(p)]: {k: _copy_value(v) for k, v in s.items()}
                 for p, s in self.state.items() if id(p) in index}
        return {"state": dict(sorted(state.items())), "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore hyperparameters and per-parameter state; everything is checked before anything changes."""
        name = type(self).__name__
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"{name}.load_state_dict: loaded state dict has {len(saved_groups)} parameter groups, "
                             f"the optimizer has {len(self.param_groups)}")
        by_index: dict[int, Tensor] = {}
        for i, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"{name}.load_state_dict: parameter group {i} has {len(saved['params'])} params in "
                                 f"the loaded state dict but {len(group['params'])} in the optimizer")
            by_index.update(zip((int(k) for k in saved["params"]), group["params"]))
        new_state: dict[Tensor, dict[str, Any]] = {}
        for key, saved in state_dict["state"].items():
            if int(key) not in by_index:
                raise ValueError(f"{name}.load_state_dict: state for parameter {key} does not belong to any group")
            p = by_index[int(key)]
            entry = {}
            for k, v in saved.items():
                v = _copy_value(v.host() if isinstance(v, Tensor) else v)
                if isinstance(v, np.ndarray) and v.ndim > 0:
                    if v.shape != p.shape:
                        raise ValueError(f"{name}.load_state_dict: state '{k}' of parameter {key} has shape "
                                         f"{tuple(v.shape)}, the parameter has shape {tuple(p.shape)}")
                    if v.dtype.kind == "f":
                        v = v.astype(p.dtype, copy=False)
                entry[k] = v
            new_state[p] = entry
        self.state = new_state
        self.param_groups = [{**copy.deepcopy({k: v for k, v in saved.items() if k != "params"}),
                              "params": group["params"]}
                             for group, saved in zip(self.param_groups, saved_groups)]


def _copy_value(v: Any) -> Any:
    """A host copy of a state value (device arrays are copied to the host: state dicts hold host arrays)."""
    if isinstance(v, np.ndarray):
        return v.copy()
    if device_of(v) not in (None, "cpu"):
        return to_host(v).copy()
    return copy.deepcopy(v)


def _state_to_host(state: dict[str, Any]) -> None:
    for k, v in state.items():
        if not isinstance(v, (np.ndarray, int, float)) and device_of(v) not in (None, "cpu"):
            state[k] = to_host(v)
