"""The hello building block (Layotto's test API)."""

from __future__ import annotations

from typing import Protocol


class HelloService(Protocol):
    def say_hello(self, name: str) -> str: ...

    def ping(self) -> None: ...

    def close(self) -> None: ...
