"""Object id generation.

Why: ids are drawn from the simulator's seeded RNG so a run with ``--seed`` is
reproducible, and they carry the same prefixes as the real API (``resp_``, ``conv_``,
``msg_``, ``run_``...), which code and logs sometimes rely on.
"""

from __future__ import annotations

import random
import string

_ALNUM = string.ascii_letters + string.digits


def hex_id(rng: random.Random, prefix: str, nbytes: int = 24) -> str:
    """``prefix_`` + hex, the style of Responses/Conversations ids."""
    return f"{prefix}_{rng.getrandbits(nbytes * 8):0{nbytes * 2}x}"


def alnum_id(rng: random.Random, prefix: str, length: int = 24) -> str:
    """``prefix_`` + mixed-case alphanumerics, the style of Assistants ids."""
    return f"{prefix}_" + "".join(rng.choice(_ALNUM) for _ in range(length))
