"""Queries over runs, named for what callers ask."""

from __future__ import annotations

from django.db import models

from .status import ACTIVE, TERMINAL


class RunQuerySet(models.QuerySet):
    def active(self) -> RunQuerySet:
        return self.filter(status__in=ACTIVE)

    def terminal(self) -> RunQuerySet:
        return self.filter(status__in=TERMINAL)
