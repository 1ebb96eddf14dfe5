"""The demo host's ``SECRET_KEY`` when the environment gives none: random, made once, kept in var/.

Why not a default string in settings: a key everybody can read in the repository signs nobody's
sessions safely. Why not refuse to start: ``make demo`` and ``make test`` must work on a fresh
checkout with no environment. So the first process that needs a key makes a random one and keeps
it in ``var/secret_key`` (untracked, mode 0600); every later process of this checkout (the web
process, workers, beat, ``manage.py`` commands) reads the same one, so sessions survive restarts.

That is right for one machine. Several hosts or containers must share one key: set
``DJANGO_SECRET_KEY`` there (compose refuses to start without it).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

#: Characters of a made key; Django's ``check --deploy`` wants at least 50, 5 of them distinct.
KEY_LENGTH = 64


def local_secret_key(path: Path) -> str:
    """The key stored at ``path``, made first if there is none.

    Several processes start together (``make demo`` starts a worker and the web process), so the
    key is written to a private temporary file and *linked* into place: a link never replaces an
    existing file, and a reader never sees a half-written key. The loser of that race reads the
    winner's key.
    """
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(KEY_LENGTH)[:KEY_LENGTH] + "\n")
        with contextlib.suppress(FileExistsError):  # another process was first: use its key
            os.link(draft, path)
    finally:
        draft.unlink(missing_ok=True)
    return _read(path)


def _read(path: Path) -> str:
    key = path.read_text().strip()
    if len(key) < 50:
        raise RuntimeError(
            f"{path} holds no usable secret key (fewer than 50 characters): delete it to have a "
            "new one made, or set DJANGO_SECRET_KEY"
        )
    return key
