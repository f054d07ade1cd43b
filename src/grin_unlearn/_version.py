"""The package version, in one place (read by ``pyproject.toml`` and by :mod:`grin_unlearn`)."""

__version__ = "0.1.0"
