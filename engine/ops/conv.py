"""conv primitives (filled in by the conv family work)."""

__all__: list[str] = []
