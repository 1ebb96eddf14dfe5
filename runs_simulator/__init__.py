"""A local, OpenAI-compatible HTTP server for testing code that talks to the OpenAI API.

Why it exists: the project's Celery tasks drive long-running remote work (background
Responses, including the discounted 2h/8h windows and flex, Assistants runs, the Batch API,
webhooks). Testing that code against the real API is slow,
costly and non-deterministic, so this package imitates the parts of the API we use, with
timelines, outcomes and faults that a test can choose. The real ``openai`` SDK talks to it
through ``base_url=http://127.0.0.1:PORT/v1``.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
