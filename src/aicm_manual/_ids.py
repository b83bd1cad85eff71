"""Response ids without a syscall per record.

``uuid.uuid4()`` reads ``os.urandom`` on every call; at tracking rates that syscall is
the single largest cost of ``track()``. We draw from a generator seeded once from
``os.urandom`` instead, reseeded in every forked child so parent and child never share
a stream. Output is a version-4 UUID in hex form, indistinguishable in shape from uuid4.
"""

from __future__ import annotations

import os
import random

_VERSION_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_VERSION_SET = (0x4000 << 64) | (0x8000 << 48)

_rng = random.Random(os.urandom(32))


def _reseed() -> None:
    _rng.seed(os.urandom(32))


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed)


def new_response_id() -> str:
    """A random 32-hex-digit uuid4-shaped id."""
    return f"{(_rng.getrandbits(128) & _VERSION_CLEAR) | _VERSION_SET:032x}"
