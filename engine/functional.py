"""engine.functional: the PyTorch-style functional API (``import engine.functional as F``).

Every function here is defined in its op family's module under engine/ops/, next to the primitives it binds.
"""

from .ops.activation import *  # noqa: F401,F403
from .ops.conv import *  # noqa: F401,F403
from .ops.creation import *  # noqa: F401,F403
from .ops.elementwise import *  # noqa: F401,F403
from .ops.index import *  # noqa: F401,F403
from .ops.inplace import *  # noqa: F401,F403
from .ops.linalg import *  # noqa: F401,F403
from .ops.loss import *  # noqa: F401,F403
from .ops.norm import *  # noqa: F401,F403
from .ops.pool import *  # noqa: F401,F403
from .ops.random import *  # noqa: F401,F403
from .ops.reduce import *  # noqa: F401,F403
from .ops.shape import *  # noqa: F401,F403

# isort: split
# issue 13: activations, normalizations, resampling and padding a PyTorch port needs (one block, to merge easily)
from .ops.resample import *  # noqa: F401,F403,E402
from .ops.sample_norm import *  # noqa: F401,F403,E402
from .ops.smooth_activation import *  # noqa: F401,F403,E402
