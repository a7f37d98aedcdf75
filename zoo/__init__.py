"""convgraph model zoo: models, datasets wiring, training/evaluation commands and the CLI."""
