"""django-environ, strict about numbers, database URLs and log levels: a bad value is one
``ImproperlyConfigured`` naming the variable, before any process starts on it.

Why: django-environ reads a float by dropping every character that is not a digit, a dot or a
minus (``RUNS_DEADLINE_S=1e3`` became 13.0, ``5s`` 5.0, ``0x10`` 10.0: values the system checks
then accept), and its failures name neither the variable nor the value (``could not convert
string to float: ''``). A database URL's value is never echoed: it may hold a password.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured


class StrictEnv(environ.Env):
    """``environ.Env`` whose ``int``, ``float`` and ``db`` refuse what they cannot read."""

    def float(self, var: str, default: Any = environ.Env.NOTSET) -> Any:  # type: ignore[override]
        return self._number(var, float, "a number", default)

    def int(self, var: str, default: Any = environ.Env.NOTSET) -> Any:  # type: ignore[override]
        return self._number(var, int, "a whole number", default)

    def db(self, var: str = "DATABASE_URL", default: Any = environ.Env.NOTSET) -> dict:  # type: ignore[override]
        try:
            with (
                warnings.catch_warnings()
            ):  # its "Engine not recognized" warning shows the password
                warnings.simplefilter("ignore")
                config = super().db(var, default=default)
        except (ValueError, KeyError) as exc:
            raise ImproperlyConfigured(f"{var} cannot be read as a database URL: {exc}") from None
        engine = config.get("ENGINE", "")
        if "." not in engine and engine not in self.DB_SCHEMES.values():
            scheme = f"its scheme {engine!r}" if engine else "it"  # the scheme only: no password
            raise ImproperlyConfigured(
                f"{var}: {scheme} is not a database Django knows (e.g. postgres://user:password@"
                "host/name or sqlite:///path)"
            )
        return config

    def log_level(self, var: str, default: str) -> str:
        """A level name ``logging`` knows (``INFO``, ``debug``), upper-cased."""
        level = str(self(var, default=default)).strip().upper()
        if level not in logging.getLevelNamesMapping():
            known = ", ".join(n for n in logging.getLevelNamesMapping() if n != "NOTSET")
            raise ImproperlyConfigured(f"{var}={level!r} is not a log level; use one of {known}")
        return level

    def _number(self, var: str, kind: type, what: str, default: Any) -> Any:
        # Read as django-environ reads any value (a "$OTHER" value names another variable),
        # then cast here: an unset variable comes back as the default, not a string.
        raw = self.get_value(var, cast=str, default=default)
        if not isinstance(raw, str):  # unset: the default as given (a number, None)
            return raw
        if not raw.strip() and default is not environ.Env.NOTSET:
            return default
        try:
            value = kind(raw.strip())
        except ValueError:
            raise ImproperlyConfigured(f"{var}={raw!r} is not {what}") from None
        if kind is float and not math.isfinite(value):
            raise ImproperlyConfigured(f"{var}={raw!r} is not a finite number")
        return value
