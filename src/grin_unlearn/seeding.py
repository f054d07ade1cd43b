"""Generators seeded by name, so a random draw depends only on (seed, what it is for), not on order.

Both the ``random`` scorer and the noise of GRIN step 3 draw one tensor at a time; seeding each draw
from a SHA-256 of a string that names it makes the draw independent of the device, of the other
tensors and of the number of processes.
"""

from __future__ import annotations

import hashlib

import torch


def named_generator(key: str) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``sha256(key)``'s first 8 bytes (little-endian) >> 1."""
    digest = hashlib.sha256(key.encode()).digest()
    return torch.Generator(device="cpu").manual_seed(int.from_bytes(digest[:8], "little") >> 1)
