"""The Django admin for runs: read-only inspection plus explicit operator actions.

``runs.py`` holds the run list and page, ``operations.py`` what the actions do, ``timeline.py``
the run page's story, ``paginator.py`` the cheap count, ``owners.py`` the owner filter,
``others.py`` threads, tool calls and webhook events, ``batches.py`` the batch list and page.
"""

from . import batches, others, runs  # noqa: F401  (importing registers the model admins)
