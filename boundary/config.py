"""The sidecar's configuration: one typed, frozen `Config`, validated completely at load.

Everything that can be wrong with a file is found before anything starts or
changes: `load` raises one `ConfigError` listing every problem with its file,
dotted key path, what was expected and what was found. That is what lets
`layotto check` report a whole file at once, and a reload validate the new file
before touching anything. The schema walk lives in `_config_parse`, the
dataclasses in `_config_model`.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping
from importlib import resources
from typing import Any

import yaml

from ._config_model import (
    Address,
    AppConfig,
    ComponentConfig,
    Config,
    ConfigError,
    Listeners,
    Problem,
    RuntimeConfig,
    default_run_dir,
)
from ._config_parse import parse_document

__all__ = [
    "Address",
    "AppConfig",
    "ComponentConfig",
    "Config",
    "ConfigError",
    "Listeners",
    "Problem",
    "RuntimeConfig",
    "default_config_path",
    "default_run_dir",
    "from_json",
    "load",
    "parse",
]

from_json = Config.from_json

_MERGE_TAG = "tag:yaml.org,2002:merge"


def load(path: str, environ: Mapping[str, str] | None = None) -> Config:
    """Read, substitute and validate the YAML config at `path` (`environ` defaults to
    `os.environ`). Raises `ConfigError`, also for an unreadable file or bad YAML."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        problem = Problem("", "a readable config file", e.strerror or str(e))
        raise ConfigError(path, [problem]) from e
    except UnicodeDecodeError as e:
        raise ConfigError(path, [Problem("", "a UTF-8 text file", str(e))]) from e
    return parse(text, path, environ)


def parse(text: str, source: str, environ: Mapping[str, str] | None = None) -> Config:
    """Validate config `text`; `source` names it in messages and keys the default run_dir."""
    try:
        doc = yaml.load(text, Loader=_Loader)  # a SafeLoader: builds no arbitrary objects
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = Problem("", "valid YAML", f"{e.problem or e.context}{where}")
        raise ConfigError(source, [problem]) from e
    except yaml.YAMLError as e:
        problem = Problem("", "valid YAML", " ".join(str(e).split()))
        raise ConfigError(source, [problem]) from e
    return parse_document(doc, source, os.environ if environ is None else environ)


def default_config_path() -> str:
    """The packaged all-in-memory config, for running without writing one first."""
    return str(resources.files("layotto.configs").joinpath("standalone.yaml"))


class _Loader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys: plain YAML keeps the last one
    silently, which would drop a component defined twice under one name."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[Hashable] = set()
        for key_node, _ in node.value:
            # Keys brought in by `<<:` may be overridden, that is their point: check only
            # the mapping's own scalar keys.
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE_TAG:
                key = self.construct_object(key_node)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r}", key_node.start_mark
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)
