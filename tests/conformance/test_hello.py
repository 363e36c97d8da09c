"""The helloworld component answers exactly as Layotto's helloworld.go does."""

from __future__ import annotations

from layotto.components.hello.base import HelloService
from layotto.components.registry import build


def test_default_greeting() -> None:
    hello: HelloService = build("hellos", "helloworld", "quick_start_demo", {}, "app")
    hello.ping()
    assert hello.say_hello("") == "greeting"
    assert hello.say_hello("world") == "greeting, world"
    hello.close()


def test_configured_greeting() -> None:
    # Layotto's own unit test: HelloString "Hi", name "Layotto" -> "Hi, Layotto".
    hello: HelloService = build("hellos", "helloworld", "h", {"hello": "Hi"}, "app")
    assert hello.say_hello("Layotto") == "Hi, Layotto"
    assert hello.say_hello("") == "Hi"
