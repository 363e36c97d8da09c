"""Wire compatibility with Layotto's own published Node.js SDK (npm ``layotto``).

``tests/compat/js/demo.js`` drives the real sidecar with the stock SDK, pinned
in ``tests/compat/js/package.json`` / ``package-lock.json``, the way Layotto's
quickstarts do (hello, state, lock, sequencer, configuration, and pub/sub
through the SDK's own AppCallback server), and prints one JSON summary.
Node and npm are required: without them the test fails, it never skips.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.redis_server import RedisServer, free_port
from tests.sidecar import REPO, Sidecar, running_sidecar

JS = Path(__file__).resolve().parent / "js"
SDK_VERSION = "1.18.0"

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name!r} is not on PATH: the Layotto JS SDK compatibility test needs "
            "Node.js (>= 14.21.3) and npm; install them, do not skip this test",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="module")
def node_sdk() -> str:
    """The node binary, with the pinned SDK installed (``npm ci`` when needed)."""
    node = _tool("node")
    installed = JS / "node_modules" / "layotto" / "package.json"
    if not installed.exists():
        npm = _tool("npm")
        try:
            result = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=JS,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"`npm ci` in {JS} took more than 300 s", pytrace=False)
        if result.returncode != 0:
            pytest.fail(
                f"`npm ci` in {JS} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}",
                pytrace=False,
            )
    version = json.loads(installed.read_text())["version"]
    assert version == SDK_VERSION, f"node_modules holds layotto {version}, not {SDK_VERSION}"
    return node


@pytest.fixture(params=["standalone", pytest.param("redis", marks=pytest.mark.redis)])
def sidecar(request: pytest.FixtureRequest) -> Iterator[Sidecar]:
    # The SDK's AppCallback server listens there (demo.js); the sidecar calls it.
    env: dict[str, str] = {"LAYOTTO_APP_PORT": str(free_port())}
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        env["REDIS_ADDR"] = server.address
    with running_sidecar(REPO / "configs" / f"{request.param}.yaml", env) as running:
        yield running


def run_demo(node: str, sidecar: Sidecar) -> dict[str, Any]:
    env = dict(os.environ)
    env.update(
        {
            "runtime_GRPC_PORT": str(sidecar.grpc_port),
            "runtime_GRPC_HOST": "127.0.0.1",
            "appcallback_GRPC_PORT": sidecar.env["LAYOTTO_APP_PORT"],
        }
    )
    result = subprocess.run(
        [node, str(JS / "demo.js")],
        cwd=JS,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, (
        f"demo.js exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, f"expected one JSON line, got:\n{result.stdout}"
    summary: dict[str, Any] = json.loads(lines[0])
    return summary


def test_layotto_js_sdk_quickstarts(node_sdk: str, sidecar: Sidecar) -> None:
    summary = run_demo(node_sdk, sidecar)

    assert summary["ok"] is True
    assert summary["sdk"] == SDK_VERSION
    assert summary["target"] == sidecar.target

    assert summary["hello"] == {"named": "greeting, layotto-js-sdk", "bare": "greeting"}

    state = summary["state"]
    assert state["get"]["value"] == "hello world"
    assert state["get"]["etag"]
    assert state["staleDelete"]["code"] == 10  # ABORTED
    assert state["deletedWithEtag"] is True
    assert state["getBulk"]["keys"] == 4
    assert state["getBulk"]["found"] == 3
    assert state["getBulk"]["missingItem"]["data"] == ""
    assert state["getBulk"]["missingItem"]["hasEtag"] is False
    assert state["transaction"] == {"upserted": "from a transaction", "deleted": True}
    assert state["deleteBulk"] is True

    assert summary["lock"] == {
        "owner1TryLock": True,
        "owner2TryLock": False,
        "owner2UnlockHeld": {"status": 2},  # LOCK_BELONG_TO_OTHERS
        "owner1Unlock": {"status": 0},  # SUCCESS
        "owner2TryLockAfter": True,
        "owner2Unlock": {"status": 0},
        "unlockFree": {"status": 1},  # LOCK_UNEXIST
    }

    assert summary["sequencer"]["ids"] == [str(i) for i in range(1, 11)]

    assert summary["configuration"] == {"get": ["v1"], "subscribed": ["v1", "v2"], "deleted": True}
    assert summary["pubsub"]["data"]["order"] == 7
    assert summary["pubsub"]["hasId"] is True
