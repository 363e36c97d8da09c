"""The ``helloworld`` hello component, answering exactly as Layotto's does.

Layotto's components/hello/helloworld/helloworld.go returns the configured
greeting, followed by ", " and the name when the request carries a non-empty
name: greeting "Hi" and name "Layotto" give "Hi, Layotto"; an empty name gives
"Hi". The greeting is the ``hello`` metadata value.
"""

from __future__ import annotations

from collections.abc import Mapping

DEFAULT_GREETING = "greeting"


class HelloWorld:
    def __init__(self, greeting: str = DEFAULT_GREETING) -> None:
        self.greeting = greeting

    def say_hello(self, name: str) -> str:
        return f"{self.greeting}, {name}" if name else self.greeting

    def ping(self) -> None:
        pass

    def close(self) -> None:
        pass


def create(name: str, metadata: Mapping[str, str], app_id: str) -> HelloWorld:
    return HelloWorld(metadata.get("hello", DEFAULT_GREETING))
