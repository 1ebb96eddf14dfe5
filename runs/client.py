"""The OpenAI client used inside tasks.

``max_retries=0`` because the SDK retries by sleeping in the calling thread, which would hold a
worker slot; our retries are Celery countdowns (see ``errors.py``). The timeout is short for the
same reason: a slow answer is retried later rather than waited for.
"""

from __future__ import annotations

from functools import lru_cache

import openai
from django.conf import settings


@lru_cache(maxsize=1)
def get_client() -> openai.OpenAI:
    """One client per process: it keeps an HTTP connection pool, so reuse it across tasks."""
    return openai.OpenAI(
        # Without a key the SDK refuses to start; the simulator accepts any key, a real server
        # answers 401, which fails the run with a clear error.
        api_key=settings.OPENAI_API_KEY or "sk-no-key-set",
        base_url=settings.OPENAI_BASE_URL or None,
        max_retries=0,
        timeout=settings.OPENAI_TIMEOUT_S,
    )


@lru_cache(maxsize=1)
def get_create_client() -> openai.OpenAI:
    """The client for creates: same pool, more patience.

    A create whose answer is lost may be doubled by the retry (the Responses API offers no way to
    look a response up by our metadata), so creates wait longer than retrieves, which are free to
    retry.
    """
    return get_client().with_options(timeout=settings.OPENAI_CREATE_TIMEOUT_S)
