"""The JSON API under ``/api/`` (django-ninja), with its OpenAPI schema at ``/api/openapi.json``."""

from .batches import router as batches_router
from .costs import router as costs_router
from .routes import api

api.add_router("/costs", costs_router)
api.add_router("/batches", batches_router)

__all__ = ["api"]
