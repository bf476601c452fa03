"""Turn a TOML/YAML file plus `--set a.b=value` overrides into a validated pydantic job config.

The typed config *is* the CLI: every field can be set from a file or with `--set`, and `--help`
lists the fields with their descriptions. Validation errors name the field and never echo values,
so a mistyped secret cannot leak into a terminal or a scheduler log."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from qbatch.common.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

M = TypeVar("M", bound=BaseModel)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Parse a .toml, .yaml/.yml or .json config file into a plain dict."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix == ".toml":
            return tomllib.loads(text)
        if p.suffix in (".yaml", ".yml"):
            import yaml

            return yaml.safe_load(text) or {}
        if p.suffix == ".json":
            return json.loads(text)
    except Exception as e:  # parse errors carry line numbers, not secrets
        raise ConfigError(f"config file {p} cannot be parsed: {e}") from None
    raise ConfigError(f"config file {p}: unknown format {p.suffix!r}; use .toml, .yaml or .json")


def parse_override_value(raw: str) -> Any:
    """`--set` values are TOML literals (numbers, booleans, strings, arrays); anything else is a string."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` overrides to a nested dict, returning a new dict."""
    out = json.loads(json.dumps(data, default=str)) if data else {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. embed.dim=512")
        key, raw = item.split("=", 1)
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise ConfigError(f"--set {item!r}: empty key")
        node = out
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: {part} is not a section")
            node = child
        node[parts[-1]] = parse_override_value(raw.strip())
    return out


def format_validation_error(error: ValidationError, model: type[BaseModel]) -> str:
    """One line per problem, naming the field; input values are left out (they may be secrets)."""
    lines = [f"invalid {model.__name__}:"]
    for err in error.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "(root)"
        lines.append(f"  {where}: {err['msg']}")
    return "\n".join(lines)


def load_config(model: type[M], path: str | Path | None = None, overrides: list[str] | None = None) -> M:
    """Load, override and validate a job config; raises ConfigError naming every bad field."""
    data = read_config_file(path) if path else {}
    data = apply_overrides(data, overrides or [])
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, model)) from None


def describe_fields(model: type[BaseModel], prefix: str = "") -> list[str]:
    """`section.field  description` lines for --help, derived from the model (never written twice)."""
    lines: list[str] = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        key = f"{prefix}{name}"
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            lines.extend(describe_fields(ann, key + "."))
        else:
            default = "" if field.is_required() else \
                f" (default: {_show_default(field.get_default(call_default_factory=True))})"
            lines.append(f"  {key:<34} {field.description or ''}{default}")
    return lines


def _show_default(value: Any) -> str:
    if value is None:
        return "none"
    if hasattr(value, "get_secret_value"):
        return "***"
    return json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
