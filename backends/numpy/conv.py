"""numpy reference kernels: conv family."""

from . import backend  # noqa: F401
