"""Fictitious names: two words of 2–3 random syllables each ("Shyththar Mixkisstos").

The world draws its authors' names here and the background corpus draws other people's, so the
subword pieces of an author's name also occur in names that are not the author's.
"""

from __future__ import annotations

import random

_ONSETS = ["b", "d", "k", "l", "m", "n", "r", "s", "t", "v", "z", "th", "br", "dr", "kr", "st", "gr", "sh"]
_VOWELS = ["a", "e", "i", "o", "u", "ae", "ei", "ou", "y"]
_CODAS = ["", "n", "r", "s", "l", "th", "m", "k", "x", "nd"]


def _syllable(rng: random.Random) -> str:
    return rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)


def fictitious_name(rng: random.Random) -> str:
    """A capitalised first and last name drawn from ``rng``."""
    first = "".join(_syllable(rng) for _ in range(rng.randint(2, 3)))
    last = "".join(_syllable(rng) for _ in range(rng.randint(2, 3)))
    return f"{first.capitalize()} {last.capitalize()}"
