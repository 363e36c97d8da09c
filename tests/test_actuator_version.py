"""/actuator/info reports the version pip installed; pyproject.toml alone writes it down."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import cast

from layotto.supervisor import actuator
from layotto.supervisor.arbiter import Arbiter


def info_version(arbiter: object) -> str:
    status, body = actuator.route(cast(Arbiter, arbiter), "GET", "/actuator/info")
    assert status == 200
    return str(body["app"]["version"])


def test_info_reports_the_installed_package_version() -> None:
    arbiter = SimpleNamespace(config=SimpleNamespace(app=SimpleNamespace(app_id="app1")))
    assert info_version(arbiter) == importlib.metadata.version("layotto-py")


REPORT = textwrap.dedent(
    """
    from types import SimpleNamespace
    from layotto.supervisor import actuator

    arbiter = SimpleNamespace(config=SimpleNamespace(app=SimpleNamespace(app_id="")))
    print(actuator.route(arbiter, "GET", "/actuator/info")[1]["app"]["version"])
    """
)


def test_info_follows_the_package_metadata_not_a_copy_in_the_code(tmp_path: Path) -> None:
    # Metadata found first on the path claims another version: the report must follow it.
    dist_info = tmp_path / "layotto_py-9.9.9.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: layotto-py\nVersion: 9.9.9\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", REPORT],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,  # not the checkout, whose egg-info would come first on the path
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "9.9.9"
