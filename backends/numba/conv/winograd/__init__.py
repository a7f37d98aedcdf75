"""Winograd F(2x2, 3x3) / F(4x4, 3x3) convolution: :mod:`.tiles` (where it applies, which tile), :mod:`.math` (the
transforms), :mod:`.planes` and :mod:`.rows` (the two data layouts' kernels), :mod:`.driver` (host side)."""

from .driver import u_panels, winograd_forward, winograd_input_grad, winograd_weight_grad, winograd_weights
from .tiles import winograd_applicable, winograd_tile, winograd_weight_grad_tile

__all__ = ["u_panels", "winograd_applicable", "winograd_tile", "winograd_weight_grad_tile", "winograd_weights",
           "winograd_forward", "winograd_input_grad", "winograd_weight_grad"]
