"""Flags generated from options dataclasses, as TRL's parser does: a field is a flag.

A field's `metadata` holds its help text ("help") and, where the flag is not the field's name,
its flag ("flag": "--asr-model"); a field not made with `option` has no flag. Each flag's
destination is "section.field", and its default is left out of the namespace, so
`given(args, section)` is what the command line set and nothing else: a config file fills the
rest, and no file key overrides a flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def option(default: Any = dataclasses.MISSING, help: str = "", *, flag: str | None | bool = True, **kw):
    """A dataclass field with its flag's help text; `flag`: its name when not --field-name, False
    for a field with no flag (a positional, or a value only a file sets)."""
    return dataclasses.field(default=default, metadata={"help": help, "flag": flag}, **kw)


def flag_name(f: dataclasses.Field, prefix: str = "") -> str | None:
    """`f`'s flag: its own name from metadata, else --field-name (with `prefix`), None for none."""
    named = f.metadata.get("flag", False)  # a plain field (no `option`) is no flag
    if named is False:
        return None
    if isinstance(named, str):
        return named
    return f"--{prefix}{f.name.replace('_', '-')}"


def add_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    section: str,
    exclude: tuple[str, ...] = (),
    rename: dict[str, str] | None = None,
    only: tuple[str, ...] | None = None,
) -> None:
    """One flag per field of `cls` (only `only`, less `exclude`); `rename` gives some fields
    another flag."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        name = (rename or {}).get(f.name) or flag_name(f)
        if f.name in exclude or (only is not None and f.name not in only) or name is None:
            continue
        kind, choices = _flag_type(hints[f.name])
        help_text = f.metadata.get("help", "")
        default = f.default if f.default is not dataclasses.MISSING else None
        if default is not None and default is not False and default != "" and "default" not in help_text:
            help_text = f"{help_text} (default: {default})".lstrip()
        kwargs: dict[str, Any] = {"dest": f"{section}.{f.name}", "default": argparse.SUPPRESS}
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = kind
            if choices:
                kwargs["choices"] = choices
            kwargs["metavar"] = "{" + ",".join(choices) + "}" if choices else f.name.upper()
        parser.add_argument(name, help=help_text.replace("%", "%%"), **kwargs)


def given(args: argparse.Namespace, section: str) -> dict[str, Any]:
    """The flags of `section` the command line set, by field name."""
    head = f"{section}."
    return {key[len(head) :]: value for key, value in vars(args).items() if key.startswith(head)}


def dests(parser: argparse.ArgumentParser) -> set[str]:
    """Every "section.field" destination `parser` has: the config keys its command takes."""
    return {a.dest for a in parser._actions if "." in a.dest}


def _flag_type(hint: Any) -> tuple[Any, tuple[str, ...]]:
    """(the argparse type, the choices) of a field's type hint; None in a union is the default."""
    from adasr_av.training.config import is_union

    options = [h for h in typing.get_args(hint) if h is not type(None)] if is_union(hint) else [hint]
    (hint,) = options
    if typing.get_origin(hint) is typing.Literal:
        return str, tuple(typing.get_args(hint))
    if hint in (bool, int, float, str, Path):
        return hint, ()
    raise TypeError(f"no flag for a field of type {hint}")
