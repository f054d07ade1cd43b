"""Experiments composed from the library: the demo, sweeps and their reports."""
