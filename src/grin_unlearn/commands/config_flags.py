"""Command-line flags from the typed configs: one ``--field-name`` per dataclass field, and the given
flags laid over a config or a YAML mapping. The configs themselves (:mod:`grin_unlearn.config`) know
nothing of argparse beyond the ``number_or_auto`` value parser."""

from __future__ import annotations

import argparse
import dataclasses

from ..config import SECTIONS, field_type


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls) -> None:
    """One ``--field-name`` option per field of ``cls`` (default None = keep the dataclass default)."""
    group = parser.add_argument_group(cls.__name__)
    for f in dataclasses.fields(cls):
        kind, item = field_type(cls, f)
        kind = f.metadata.get("type", kind)  # a parser of its own (number_or_auto)
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "")
        if kind is bool:
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif kind is list:
            group.add_argument(flag, dest=f.name, nargs="*", type=item, default=None, help=help_text)
        else:
            group.add_argument(flag, dest=f.name, type=kind, default=None, help=help_text)


def dataclass_from_namespace(cls, args: argparse.Namespace, base=None):
    """``cls`` built from ``base`` (or defaults) with every option the user gave applied on top."""
    values = dataclasses.asdict(base) if base is not None else {}
    for f in dataclasses.fields(cls):
        given = getattr(args, f.name, None)
        if given is not None:
            values[f.name] = given
    return cls(**values)


def mapping_with_flags(mapping: dict | None, args: argparse.Namespace, objective: str | None = None) -> dict:
    """``mapping`` (objective plus sections) with every option the user gave laid over it."""
    merged = {key: (dict(value) if isinstance(value, dict) else value) for key, value in (mapping or {}).items()}
    if objective is not None:
        merged["objective"] = objective
    for name, cls in SECTIONS.items():
        section = merged.get(name) or {}
        for f in dataclasses.fields(cls):
            given = getattr(args, f.name, None)
            if given is not None:
                section[f.name] = given
        if section:
            merged[name] = section
    return merged
