"""The JSON API under ``/api/`` (django-ninja), with its OpenAPI schema at ``/api/openapi.json``."""

from .batches import router as batches_router
from .costs import router as costs_router
from .not_allowed import json_not_allowed
from .routes import api

api.add_router("/costs", costs_router)
api.add_router("/batches", batches_router)

#: The API's URL patterns (``path("api/", urls)``), each 405 in JSON.
urls = json_not_allowed(api.urls)

__all__ = ["api", "urls"]
