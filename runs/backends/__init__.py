"""OpenAI API backends behind one small interface (``base.Backend``)."""

from .base import Backend, RemoteState, get_backend

__all__ = ["Backend", "RemoteState", "get_backend"]
