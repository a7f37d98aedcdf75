"""``CONVGRAPH_CONV_ALGO``: one variable for every backend that chooses among conv algorithms (numba, cuda).

Its value is ``heuristic``, ``measure`` or an algorithm name of any of these backends. A backend forces its own
algorithm names; it reads another backend's name as its heuristic, so one setting can pin the CPU algorithm of a
run that also uses the GPU (and the other way round). A name that no backend has is an error naming the backend
that read it and every valid name. The names live here, as data, so each backend knows the others' without
importing them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from engine.backend import are_deterministic_algorithms_enabled

ALGORITHMS: dict[str, tuple[str, ...]] = {
    "numba": ("direct", "gemm-tables", "gemm-planes", "gemm_1x1", "gemm_1x1-nchw", "im2col", "im2col-pixel",
              "im2col-channel", "winograd-f2", "winograd-f4", "nchwc-winograd-f2",
              "nchwc-winograd-f4", "blocked-direct", "blocked-winograd-f2",
              "blocked-winograd-f4"),
    "cuda": ("igemm-128x128", "igemm-64x64", "direct"),
}
MODES = ("heuristic", "measure")


def _expected() -> str:
    names = "; ".join(f"{b}: {', '.join(a)}" for b, a in ALGORITHMS.items())
    return f"expected 'heuristic', 'measure' or an algorithm name ({names})"


def check_policy(policy: str, backend: str, source: str = "conv algorithm policy", shared: bool = False) -> str:
    """The policy ``backend`` applies for ``policy``. ``shared`` (the environment variable): another backend's
    algorithm name means this backend's heuristic; otherwise (a backend's own ``set_conv_policy``) only this
    backend's names are accepted."""
    own = ALGORITHMS[backend]
    if policy in MODES or policy in own:
        return policy
    others = [b for b, names in ALGORITHMS.items() if b != backend and policy in names]
    if shared and others:
        return "heuristic"
    if others:
        raise ValueError(f"{source}: {policy!r} is a {others[0]} algorithm, not one of backend {backend!r}; "
                         f"expected 'heuristic', 'measure' or one of {', '.join(own)}")
    raise ValueError(f"{source}: unknown policy {policy!r} (read by backend {backend!r}); {_expected()}")


def in_force(policy: str, autotune: bool) -> str:
    """The mode a checked ``policy`` means here: ``"measure"`` for the heuristic inside a module compiled with
    ``autotune=True``, ``"heuristic"`` for ``"measure"`` under deterministic algorithms; a forced name stays."""
    if policy == "heuristic" and autotune:
        policy = "measure"
    if policy == "measure" and are_deterministic_algorithms_enabled():
        policy = "heuristic"
    return policy


@dataclass
class Choice:
    """One convolution's algorithm and how it was chosen; :meth:`describe` is the compile report's note."""

    algorithm: str
    how: str  # "measured", "heuristic", "only", "forced"
    times_ms: dict[str, float] = field(default_factory=dict)
    ms_digits: ClassVar[int] = 2  # decimals of the measured times in the note

    def describe(self) -> str:
        if self.how == "measured":
            ts = ", ".join(f"{a} {t:.{self.ms_digits}f} ms"
                           for a, t in sorted(self.times_ms.items(), key=lambda kv: kv[1]))
            return f"{self.algorithm} (measured: {ts})"
        return f"{self.algorithm} ({self.how})"
