"""The optimizer update primitive (engine/optim/update.py): the optimizer's own array update."""

from engine.optim.update import update_kernel

from . import backend

backend.register("optimizer_update")(update_kernel)
