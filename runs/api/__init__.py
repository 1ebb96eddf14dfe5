"""The JSON API under ``/api/`` (django-ninja), with its OpenAPI schema at ``/api/openapi.json``."""

from .routes import api

__all__ = ["api"]
