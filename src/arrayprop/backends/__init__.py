"""Backends: one adapter per array library (see docs/architecture.md)."""

from arrayprop.backends.core import BACKENDS, Backend, backend_of, describe_backends, get_backend

__all__ = ["BACKENDS", "Backend", "backend_of", "describe_backends", "get_backend"]
