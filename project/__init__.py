"""Django project: settings from the environment, the Celery app, URLs."""

from .celery import app as celery_app

__all__ = ["celery_app"]
