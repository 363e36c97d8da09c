"""Everything a worker or the API process imports is already imported by the
zygote before it forks them: a module imported after the fork is private
memory in every child (it cost ~3 MiB per worker once)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

CHECK = textwrap.dedent(
    """
    import sys
    from layotto.workers import zygote
    from layotto.boundary.specs import WorkerSpec
    from layotto.workers.block_table import open_block

    zygote.preload()
    before = set(sys.modules)
    for kind, type_ in [
        ("hellos", "helloworld"), ("state", "in-memory"), ("lock", "in-memory"),
        ("sequencer", "in-memory"), ("config_store", "in-memory"), ("pub_subs", "in-memory"),
    ]:
        spec = WorkerSpec(kind, "c", type_, {}, "app", 0, "ipc:///tmp/x/w-c-0.ipc")
        open_block(spec).close()
    import grpc
    from concurrent.futures import ThreadPoolExecutor
    server = grpc.server(ThreadPoolExecutor(1))  # what the API process makes
    grpc.insecure_channel("127.0.0.1:1").close()  # what the pub/sub worker makes
    late = sorted(m for m in set(sys.modules) - before if m.startswith(("layotto", "grpc")))
    print(",".join(late))
    """
)


def test_opening_any_block_imports_nothing_the_zygote_did_not() -> None:
    result = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "", f"imported after the fork: {result.stdout.strip()}"


IN_MEMORY_ONLY = textwrap.dedent(
    """
    import sys
    from layotto.components import registry
    from layotto.workers import zygote

    zygote.preload([t for t in registry.TYPES if t[1] != "redis"])
    print("redis" in sys.modules)
    """
)


def test_a_config_without_redis_gets_a_zygote_without_redis_py() -> None:
    # redis-py is ~10 MiB of heap in the zygote family; the in-memory
    # pub/sub once pulled it in through a shared metadata parser.
    result = subprocess.run(
        [sys.executable, "-c", IN_MEMORY_ONLY],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "False"
