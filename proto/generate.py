"""Regenerate the Python code of the wire-API ``.proto`` files in this directory.

Usage (from anywhere, with the project's virtualenv)::

    python proto/generate.py           # rewrite proto/*_pb2.py, *_pb2_grpc.py and their .pyi
    python proto/generate.py --check   # exit 1, listing files that differ from a fresh run

The ``.proto`` files import each other as ``layotto/proto/<name>.proto``; protoc is run
with the virtual mapping ``-Ilayotto/proto=<this directory>`` so the generated modules
import each other as ``from layotto.proto import ..._pb2`` (the directory is installed
as the package ``layotto.proto``). Tools used: ``grpc_tools.protoc`` (messages and gRPC
stubs) and mypy-protobuf's ``protoc-gen-mypy`` / ``protoc-gen-mypy_grpc`` (type stubs),
all pinned in the ``dev`` extra of pyproject.toml so the output is reproducible.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Sequence
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent
VIRTUAL_DIR = "layotto/proto"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2_grpc.py", "_pb2.pyi", "_pb2_grpc.pyi")
PLUGINS = ("protoc-gen-mypy", "protoc-gen-mypy_grpc")


class GenerateError(Exception):
    """protoc or a plugin is missing or failed."""


def _is_generated(path: Path) -> bool:
    return path.is_file() and path.name.endswith(GENERATED_SUFFIXES)


def _find_plugin(name: str) -> Path:
    """Locate a protoc plugin script, preferring the running interpreter's environment."""
    candidates = [Path(sysconfig.get_path("scripts")), Path(sys.executable).parent]
    for directory in candidates:
        for filename in (name, f"{name}.exe"):
            path = directory / filename
            if path.is_file():
                return path
    found = shutil.which(name)
    if found is None:
        raise GenerateError(f"{name} not found; install the dev extra (mypy-protobuf)")
    return Path(found)


def proto_sources() -> list[Path]:
    sources = sorted(PROTO_DIR.glob("*.proto"))
    if not sources:
        raise GenerateError(f"no .proto files in {PROTO_DIR}")
    return sources


def run_protoc(out_dir: Path) -> dict[str, Path]:
    """Generate all code into ``out_dir``; return generated file name -> path."""
    args: list[str] = [sys.executable, "-m", "grpc_tools.protoc", f"-I{VIRTUAL_DIR}={PROTO_DIR}"]
    for plugin in PLUGINS:
        args.append(f"--plugin={plugin}={_find_plugin(plugin)}")
    args += [
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
    ]
    # Virtual names (not disk paths) so that protoc resolves them through the mapping.
    args += [f"{VIRTUAL_DIR}/{source.name}" for source in proto_sources()]
    # grpc_tools.protoc appends its bundled include dir (google/protobuf/*.proto) itself.
    # Run from the output dir so that no stray relative path can resolve on disk.
    result = subprocess.run(args, cwd=out_dir, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise GenerateError(f"protoc failed ({result.returncode}):\n{result.stderr.strip()}")
    generated_dir = out_dir / VIRTUAL_DIR
    files = {p.name: p for p in sorted(generated_dir.iterdir()) if _is_generated(p)}
    if not files:
        raise GenerateError("protoc produced no files")
    return files


def committed_files() -> dict[str, Path]:
    return {p.name: p for p in sorted(PROTO_DIR.iterdir()) if _is_generated(p)}


def generate() -> list[str]:
    """Regenerate in place; return the names of files written or removed."""
    changed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="layotto-proto-") as tmp:
        fresh = run_protoc(Path(tmp))
        old = committed_files()
        for name, path in fresh.items():
            target = PROTO_DIR / name
            data = path.read_bytes()
            if not target.is_file() or target.read_bytes() != data:
                target.write_bytes(data)
                changed.append(name)
        for name, path in old.items():
            if name not in fresh:
                path.unlink()
                changed.append(name)
    return changed


def check() -> list[str]:
    """Return one line per generated file that is stale, missing or no longer produced."""
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="layotto-proto-") as tmp:
        fresh = run_protoc(Path(tmp))
        old = committed_files()
        for name, path in fresh.items():
            if name not in old:
                problems.append(f"missing: proto/{name}")
            elif old[name].read_bytes() != path.read_bytes():
                problems.append(f"differs: proto/{name}")
        problems += [f"not generated any more: proto/{name}" for name in old if name not in fresh]
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 if the committed generated files differ from a fresh run",
    )
    options = parser.parse_args(argv)
    try:
        if options.check:
            problems = check()
            if problems:
                print("generated protobuf code is out of date:", file=sys.stderr)
                for line in problems:
                    print(f"  {line}", file=sys.stderr)
                print("run: python proto/generate.py", file=sys.stderr)
                return 1
            print("generated protobuf code is up to date")
            return 0
        changed = generate()
    except GenerateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if changed:
        print("updated: " + ", ".join(f"proto/{name}" for name in changed))
    else:
        print("generated protobuf code already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
