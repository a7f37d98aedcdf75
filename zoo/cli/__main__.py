"""``python -m zoo.cli ...`` runs the ``convgraph`` command line."""

import sys

from . import main

sys.exit(main())
