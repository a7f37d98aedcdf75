"""pool primitives (filled in by the pool family work)."""

__all__: list[str] = []
