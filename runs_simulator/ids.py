"""Object id generation.

Why: ids carry the same prefixes as the real API (``resp_``, ``conv_``, ``msg_``, ``run_``...),
which code and logs sometimes rely on. They are drawn from the simulator's seeded RNG (so a run
with ``--seed`` makes the same draws in the same order) but mixed with a salt chosen per process:
like the real API's, ids never repeat across simulator processes. A client keeps them (our runs
store response ids, our webhook intake dedupes on ``webhook-id``), so two demos with the same seed
must not hand out the same ids.
"""

from __future__ import annotations

import random
import secrets
import string

_ALNUM = string.ascii_letters + string.digits
_SALT = secrets.randbits(256)


def hex_id(rng: random.Random, prefix: str, nbytes: int = 24) -> str:
    """``prefix_`` + hex, the style of Responses/Conversations ids."""
    bits = nbytes * 8
    return f"{prefix}_{rng.getrandbits(bits) ^ (_SALT % (1 << bits)):0{nbytes * 2}x}"


def alnum_id(rng: random.Random, prefix: str, length: int = 24) -> str:
    """``prefix_`` + mixed-case alphanumerics, the style of Assistants ids."""
    n = len(_ALNUM)
    return f"{prefix}_" + "".join(
        _ALNUM[(_ALNUM.index(rng.choice(_ALNUM)) + (_SALT >> (5 * i))) % n] for i in range(length)
    )
