"""Training configs: TOML files read into nested dataclasses, checked key by key.

A typo in a config should stop a run before it starts, naming the key, not silently train with a
default: unknown keys and wrong types are errors.
"""

from __future__ import annotations

import dataclasses
import sys
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from adasr_av.errors import AdasrError, first_line

T = TypeVar("T")


def read_toml(path: str | Path) -> dict[str, Any]:
    """A config file's tables; an unreadable or invalid file is one line naming it."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise AdasrError(f"config {path}: {err.strerror.lower()}") from None
    except UnicodeDecodeError as err:
        raise AdasrError(f"config {path}: not UTF-8 text (byte {err.start + 1})") from None
    except (ValueError, RecursionError) as err:  # TOMLDecodeError, a number too long, arrays too deep
        raise AdasrError(f"config {path}: not valid TOML ({first_line(err)})") from None


def load_config(
    path: str | Path, cls: type[T], overrides: dict[str, Any] | None = None, data: dict | None = None
) -> T:
    """Read `path` (or its tables already read, `data`) into `cls`; `overrides` ("section.key":
    value) win over the file."""
    data = read_toml(path) if data is None else data
    for dotted, value in (overrides or {}).items():
        *sections, key = dotted.split(".")
        table = data
        for i, section in enumerate(sections):
            table = table.setdefault(section, {})
            if not isinstance(table, dict):
                raise AdasrError(
                    f"config {path}: {'.'.join(sections[: i + 1])!r} must be a table, to set {dotted!r}"
                )
        table[key] = value
    return from_dict(cls, data, f"config {path}")


def from_dict(cls: type[T], data: dict, where: str, prefix: str = "") -> T:
    if not isinstance(data, dict):
        raise AdasrError(f"{where}: '{prefix.rstrip('.')}' must be a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in data:
        if key not in fields:
            known = ", ".join(fields)
            raise AdasrError(f"{where}: unknown key {prefix + key!r} (known: {known})")  # repr: one line
    values = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = from_dict(hint, value, where, f"{prefix}{name}.")
        else:
            values[name] = _checked(value, hint, where, f"{prefix}{name}")
    return cls(**values)


def _checked(value: Any, hint: Any, where: str, key: str) -> Any:
    """`value` if it fits the type hint (ints pass for floats); an error naming the key if not."""
    options = typing.get_args(hint) if is_union(hint) else (hint,)
    for option in options:
        if option is type(None) and value is None:
            return value
        if option is float and isinstance(value, int | float) and not isinstance(value, bool):
            if isinstance(value, int) and abs(value) > sys.float_info.max:
                raise AdasrError(f"{where}: key '{key}' is too large for a number")
            return float(value)
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option in (str, bool) and type(value) is option:
            return value
        if option is Path and isinstance(value, str | Path):
            return Path(value)
        origin = typing.get_origin(option)
        if origin is typing.Literal and value in typing.get_args(option):
            return value
        if origin in (list, tuple) and isinstance(value, list):
            (item,) = typing.get_args(option)[:1]
            return type(value)(_checked(v, item, where, key) for v in value)
    raise AdasrError(f"{where}: key '{key}' must be {_describe(hint)}, got {value!r}")


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) is typing.Literal:
        return " or ".join(repr(v) for v in typing.get_args(hint))
    if is_union(hint):
        return " or ".join(_describe(h) for h in typing.get_args(hint))
    names = {float: "a number", int: "an integer", str: "a string", bool: "true or false", Path: "a path"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def is_union(hint: Any) -> bool:
    """Whether a type hint is `A | B` (or `Optional[A]`)."""
    return isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
