"""cuda conv2d and both gradients: implicit GEMMs on shared tiles (:mod:`.igemm` on :mod:`..tiling`) and direct
kernels for grouped / depthwise layers (:mod:`.direct`), one chosen per layer and role (:mod:`.select`), launched by
:mod:`.drivers` (the registered kernels); :mod:`.notes` gives the compile report its per-node algorithm note."""

from . import drivers as drivers
from . import notes as notes
