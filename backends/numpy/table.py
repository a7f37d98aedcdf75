"""The numpy backend's kernel table; each kernel module of this package registers into it."""

from engine.backend import Backend, register_backend

backend = register_backend(Backend("numpy"))
