"""The class-index loss coefficients (engine/ops/loss.py: class_coef)."""

from __future__ import annotations

import numpy as np

from engine.ops.loss import class_coefficients

from .table import backend


@backend.register("class_coef")
def class_coef(t: np.ndarray, out: tuple[np.ndarray, np.ndarray], **attrs) -> None:
    coef, denom = class_coefficients(t, **attrs)
    out[0][...] = coef
    out[1][...] = denom
