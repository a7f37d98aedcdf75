"""numpy reference kernels: pool family."""

from . import backend  # noqa: F401
