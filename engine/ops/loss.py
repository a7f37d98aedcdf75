"""loss primitives (filled in by the loss family work)."""

__all__: list[str] = []
