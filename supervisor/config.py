"""The sidecar's configuration: one typed, frozen `Config`, validated completely at load.

Everything that can be wrong with a file is found before anything starts or
changes: `load` raises one `ConfigError` listing every problem with its file,
dotted key path, what was expected and what was found. `layotto check` and a
reload use the same function, so a reload never acts on a half-valid config.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib import resources

from ._config_model import (
    Address,
    AppConfig,
    ComponentConfig,
    Config,
    ConfigError,
    Listeners,
    Problem,
    RuntimeConfig,
)
from ._config_parse import parse_document, read_yaml

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
    "from_json",
    "load",
    "parse",
]

from_json = Config.from_json


def load(path: str, environ: Mapping[str, str] | None = None) -> Config:
    """Read, substitute and validate the YAML config at `path` (`environ` defaults to
    `os.environ`). Raises `ConfigError`, also for an unreadable file or bad YAML."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(
            path, [Problem("", "a readable config file", e.strerror or str(e))]
        ) from e
    except UnicodeDecodeError as e:
        raise ConfigError(path, [Problem("", "a UTF-8 text file", str(e))]) from e
    return parse(text, path, environ)


def parse(text: str, source: str, environ: Mapping[str, str] | None = None) -> Config:
    """Validate config `text`; `source` names it in messages and keys the default run_dir."""
    doc, problem = read_yaml(text)
    if problem is not None:
        raise ConfigError(source, [problem])
    return parse_document(doc, source, os.environ if environ is None else environ)


def default_config_path() -> str:
    """The packaged all-in-memory config, for running without writing one first."""
    return str(resources.files("layotto.configs").joinpath("standalone.yaml"))
