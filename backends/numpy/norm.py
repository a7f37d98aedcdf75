"""numpy reference kernels: norm family."""

from . import backend  # noqa: F401
