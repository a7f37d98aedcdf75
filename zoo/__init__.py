"""convgraph model zoo: models, datasets wiring, training/evaluation commands and the CLI."""

from .models import get, list_models  # noqa: F401 - the public zoo API
