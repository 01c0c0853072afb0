"""Typed method configs: a dataclass per method holds the defaults (cited in the method's docstring).

``build_config(MyMethod.Config, {"lr": "1e-4"})`` checks every key against the dataclass
(did-you-mean on a typo), coerces strings from ``--set key=value`` to the field's type, checks
``Literal`` choices, checks the range of the values (:data:`RANGE_RULES`), and returns a frozen instance.
``load_overrides`` reads a user YAML file and ``parse_set`` parses ``--set`` items. :func:`check_seed` is the
one rule for every seed (method seeds, split seeds).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from cmh.errors import ConfigError, did_you_mean

#: Seeds are what both ``numpy.random.default_rng`` and ``torch.manual_seed`` accept for every method:
#: integers ``0 <= seed <= MAX_SEED``.
MAX_SEED = 2**32 - 1

#: Range rules applied to every method's options by name (shell patterns, first match wins), so that a
#: plugin's config gets them too: ``(low, high, low_open)`` with ``None`` for no bound; ``low_open`` makes
#: the low bound exclusive. A value of the wrong range is a one-line :class:`ConfigError` at construction,
#: before any data is loaded or any training starts. Every float option must also be finite.
RANGE_RULES: tuple[tuple[str, float | None, float | None, bool], ...] = (
    ("backbone_lr", 0, None, False),  # a multiplier of the image lr; 0 freezes the backbone
    ("lr", 0, None, True),  # learning rates
    ("lr_*", 0, None, True),
    ("*_lr", 0, None, True),
    ("epochs", 1, None, False),  # counts of steps / items
    ("iters", 1, None, False),
    ("*_iters", 1, None, False),
    ("*_passes", 1, None, False),
    ("*_size", 1, None, False),  # batch_size, sample_size, image_size, ...
    ("*_dim", 1, None, False),
    ("*_hidden", 0, None, False),  # 0 = no hidden layer
    ("*_workers", 0, None, False),
    ("patience", 0, None, False),
    ("*_fraction", 0, 1, False),
    ("reg", 0, None, False),
    ("*_reg", 0, None, False),
)


def check_seed(seed: object, what: str = "seed") -> int:
    """``seed`` as an int if it is a whole number in ``0..MAX_SEED``, else a one-line :class:`ConfigError`."""
    try:
        value = int(seed)  # type: ignore[call-overload]
        ok = value == seed and not isinstance(seed, bool)
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok or not 0 <= value <= MAX_SEED:
        raise ConfigError(f"{what} must be a whole number from 0 to {MAX_SEED} (2**32 - 1), got {seed!r}")
    return value


def _range_rule(name: str) -> tuple[float | None, float | None, bool] | None:
    for pattern, low, high, low_open in RANGE_RULES:
        if fnmatch.fnmatchcase(name, pattern):
            return low, high, low_open
    return None


def check_value(name: str, value: Any, default: Any = None) -> None:
    """Raise :class:`ConfigError` when option ``name``'s ``value`` (after coercion) is NaN/inf or outside
    its :data:`RANGE_RULES` range; tuples and lists are checked item by item. ``default`` (the option's
    default, when it has one) is offered as the fix."""
    if isinstance(value, (tuple, list)):
        for v in value:
            check_value(name, v, default)
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if isinstance(value, float) and not math.isfinite(value):
        fix = _fix(name, default)
        raise ConfigError(f"invalid value {value!r} for '{name}': expected a finite number{fix}")
    rule = _range_rule(name)
    if rule is None:
        return
    low, high, low_open = rule
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and value > high
    if too_low or too_high:
        if high is not None:
            want = f"from {low:g} to {high:g}"
        else:
            want = f"> {low:g}" if low_open else f">= {low:g}"
        fix = _fix(name, default)
        raise ConfigError(f"invalid value {value!r} for '{name}': it must be {want}{fix}")


def _fix(name: str, default: Any) -> str:
    if default is None:
        return f"; or leave '{name}' out to use the method's default"
    return f"; e.g. --set {name}={_show(default)} (the default)"


def _show(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)


def _coerce(name: str, value: Any, tp: Any) -> Any:
    origin = get_origin(tp)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in get_args(tp):
                return None
        errors = []
        for a in args:
            try:
                return _coerce(name, value, a)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"invalid value {value!r} for '{name}'")
    if origin is Literal:
        choices = get_args(tp)
        for c in choices:
            if value == c or str(value) == str(c):
                return c
        raise ConfigError(
            f"invalid value {value!r} for '{name}'{did_you_mean(str(value), map(str, choices))}; "
            f"choose one of {', '.join(map(str, choices))}"
        )
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v for v in value.replace(" ", "").strip("[]()").split(",") if v]
        (inner, *_) = get_args(tp) or (Any,)
        items = [_coerce(name, v, inner) for v in value]
        return tuple(items) if origin is tuple else items
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("1", "true", "yes", "on"):
            return True
        if str(value).lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"invalid value {value!r} for '{name}': expected true or false")
    if tp in (int, float, str):
        try:
            if tp is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            if tp is int and isinstance(value, str):
                return int(float(value)) if float(value).is_integer() else int(value)
            return tp(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"invalid value {value!r} for '{name}': expected {tp.__name__}") from None
    return value


def build_config(config_cls: type, overrides: dict[str, Any] | None = None) -> Any:
    """Instantiate ``config_cls`` (a dataclass) with validated, type-coerced ``overrides``."""
    overrides = dict(overrides or {})
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    hints = typing.get_type_hints(config_cls)
    for key in overrides:
        if key not in fields:
            raise ConfigError(
                f"unknown option '{key}' for {config_cls.__qualname__.split('.')[0]}"
                f"{did_you_mean(key, fields)}; valid options: {', '.join(sorted(fields))}"
            )
    values = {k: _coerce(k, v, hints[k]) for k, v in overrides.items()}
    for key, value in values.items():
        default = fields[key].default
        check_value(key, value, None if default is dataclasses.MISSING else default)
    return config_cls(**values)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain dict of a config dataclass (tuples become lists, for JSON/YAML)."""
    out = dataclasses.asdict(cfg)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def _scalar(text: str) -> Any:
    """A ``--set`` value: int, float (``1e-4`` too, which YAML 1.1 leaves a string), else YAML, else text."""
    for tp in (int, float):
        try:
            return tp(text)
        except ValueError:
            pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_set(items: list[str] | None) -> dict[str, Any]:
    """Parse ``["lr=1e-4", "epochs=5"]`` into a dict of strings (YAML scalars are parsed)."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got '{item}' (e.g. --set epochs=5)")
        key, value = item.split("=", 1)
        out[key.strip()] = _scalar(value.strip())
    return out


def load_overrides(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping of option overrides from ``path``."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file '{p}' not found; pass an existing YAML file to --config")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"config file '{p}' is not valid YAML ({exc.__class__.__name__}); fix its syntax"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{p}' must hold a mapping of option: value")
    return data
