"""Typed dataclass configs: YAML files, dotted CLI overrides, unknown keys are errors.

A job's config is a (nested) dataclass. :func:`build_config` layers, lowest first:
the dataclass defaults, a YAML file, the job's named flags, then dotted overrides
(``train.lr=1e-4``). Every layer is checked against the dataclass: an unknown key
names its dotted path and the valid keys; values are coerced to the field's type.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file, flag or override does not fit the job's config dataclass."""


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _coerce(value: Any, tp: Any, path: str) -> Any:
    tp, optional = _unwrap_optional(tp)
    if value is None:
        if optional or tp is Any:
            return None
        raise ConfigError(f"{path}: null is not allowed (expected {getattr(tp, '__name__', tp)})")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping for {tp.__name__}, got {value!r}")
        return _build(tp, value, path)
    origin = typing.get_origin(tp)
    if origin in (list, tuple, Sequence):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{path}: expected {len(args)} values, got {len(value)}")
            return tuple(_coerce(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        key_tp, val_tp = typing.get_args(tp) or (Any, Any)
        return {_coerce(k, key_tp, path): _coerce(v, val_tp, f"{path}.{k}") for k, v in value.items()}
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{path}: {value!r} is not one of {list(choices)}")
        return value
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{path}: expected true/false, got {value!r}")
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{path}: expected a number, got {value!r}") from None
    if tp is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{path}: expected an integer, got {value!r}") from None
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return str(value)
    return value


def _build(cls: type[T], data: Mapping[str, Any], path: str) -> T:
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{path}." if path else ""
        raise ConfigError(
            f"unknown config key(s) {[where + k for k in unknown]}; valid keys of "
            f"{path or cls.__name__}: {sorted(fields)}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(value, hints[name], f"{path}.{name}" if path else name)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"{path or cls.__name__}: {e}") from e


def from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
    """Rebuild a config from :func:`to_dict` output (e.g. inside a Ray worker), with checks."""
    return _build(cls, data, "")


def to_dict(config: Any) -> dict[str, Any]:
    """Plain dict (tuples as lists) for YAML, MLflow params and manifests."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(config)


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted!r}: {key!r} is not a section")
        node = child
    node[keys[-1]] = value


def _merge(tree: dict[str, Any], data: Mapping[str, Any]) -> None:
    """Deep-merge ``data`` into ``tree`` (sections merge; values replace)."""
    for key, value in data.items():
        if isinstance(value, Mapping) and isinstance(tree.get(key), dict):
            _merge(tree[key], value)
        else:
            tree[key] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``"train.lr=1e-4"`` -> ``("train.lr", 1e-4)``; the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.path=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {text!r} has no key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def build_config(
    cls: type[T],
    yaml_path: str | Path | None = None,
    flags: Mapping[str, Any] | None = None,
    overrides: Sequence[str] = (),
    base: Mapping[str, Any] | None = None,
) -> T:
    """Defaults < ``base`` (a to_dict tree) < YAML file < named flags (dotted keys; None = not
    given) < overrides."""
    import copy

    tree: dict[str, Any] = copy.deepcopy(dict(base)) if base else {}
    _merge(tree, load_yaml(yaml_path) if yaml_path else {})
    for dotted, value in (flags or {}).items():
        if value is not None:
            _set_dotted(tree, dotted, value)
    for text in overrides:
        _set_dotted(tree, *parse_override(text))
    return _build(cls, tree, "")


def save_yaml(config: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))


RESOLVED_NAME = "config.resolved.yaml"
"""The file a run's resolved config is saved as (in its output directory and its MLflow artifacts)."""


def to_yaml(config: Any) -> str:
    """The resolved config as YAML, in field order; :func:`from_dict` of its ``safe_load`` rebuilds it."""
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def save_resolved(config: Any, output_dir: str | Path) -> Path:
    """Write ``output_dir/config.resolved.yaml`` (re-runnable with ``--config``); -> its path."""
    path = Path(output_dir) / RESOLVED_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_yaml(config))
    return path


def add_config_args(parser: Any, overrides: bool = True) -> None:
    """The flags every configurable job shares: --config, --print-config and (optionally) dotted overrides."""
    parser.add_argument("--config", help="YAML file with the job's config keys (flags and overrides win over it)")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config as YAML and exit (nothing starts)")
    if overrides:
        parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.lr=3e-4")


def config_from_args(parser: Any, args: Any, cls: type[T], flags: dict[str, Any]) -> T | None:
    """The job's config from ``--config``, ``flags`` and the dotted overrides (a bad key or value exits
    through ``parser.error`` with status 2); None after ``--print-config`` printed it as YAML."""
    try:
        cfg = build_config(cls, args.config, flags, getattr(args, "overrides", None))
    except (ConfigError, ValueError) as e:
        parser.error(str(e))
    if args.print_config:
        print(to_yaml(cfg), end="")
        return None
    return cfg
