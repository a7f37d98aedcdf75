"""norm primitives (filled in by the norm family work)."""

__all__: list[str] = []
