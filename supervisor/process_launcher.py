"""The real ``Launcher``: which of the three ways a child starts, and its control link.

Workers and the API process are forked by their generation's zygote when it
runs (they then share its imported modules), otherwise exec'd; generation
1's zygote was forked before trio started (``prefork_zygote``) and is only
adopted; any later zygote is exec'd. The primitives live in ``processes``.
"""

from __future__ import annotations

import logging
import os

import trio

from layotto.boundary.control_link import Message
from layotto.boundary.control_link_trio import MessageReader, send_message
from layotto.boundary.specs import ChildSpec, ZygoteSpec
from layotto.supervisor.launcher import ZygoteLookup
from layotto.supervisor.processes import Handle, Preforked, Zygote, launch

log = logging.getLogger("layotto.supervisor")

# Roles to exec instead of forking from the zygote ("api,worker"): for
# comparing the two in benchmarks and for ruling the zygote out when debugging.
_EXEC_ROLES = frozenset(filter(None, os.environ.get("LAYOTTO_EXEC_ROLES", "").split(",")))


def preforking() -> bool:
    """Whether generation 1's zygote is forked by the supervisor (see
    processes.prefork_zygote); ``LAYOTTO_EXEC_ROLES=zygote`` execs it."""
    return "zygote" not in _EXEC_ROLES


class LinkedProcess:
    """A started child (exec'd, forked or preforked) and our end of its link.

    For a zygote, ``forks`` is the fork protocol on that link: its ``forked``
    and ``exited`` reports are consumed here, never shown to the arbiter.
    """

    def __init__(self, handle: Handle, what: str, forks: Zygote | None = None) -> None:
        self._handle = handle
        self._reader = MessageReader(handle.control, what)
        self.forks = forks

    @property
    def pid(self) -> int:
        return self._handle.pid

    def signal(self, signum: int) -> None:
        self._handle.signal(signum)

    async def wait(self) -> int:
        return await self._handle.wait()

    async def send(self, message: Message) -> None:
        await send_message(self._handle.control, message)

    async def receive(self) -> Message | None:
        while (message := await self._reader.receive()) is not None:
            if self.forks is not None and message.get("event") in ("forked", "exited"):
                self.forks.on_message(message)
            else:
                return message
        return None

    def close(self) -> None:
        self._handle.control.close()


class ProcessLauncher:
    def __init__(self, preforked: Preforked | None = None) -> None:
        self._preforked = preforked  # generation 1's zygote, until its first start

    async def spawn(self, child_id: str, spec: ChildSpec, zygote: ZygoteLookup) -> LinkedProcess:
        what = f"control link of {child_id}"
        if isinstance(spec, ZygoteSpec):
            handle: Handle
            if spec.generation == 1 and self._preforked is not None:
                handle, self._preforked = self._preforked.adopt(), None  # its first start only
            else:
                handle = await launch(spec)
            return LinkedProcess(handle, what, Zygote(handle.control))
        if spec.role not in _EXEC_ROLES:
            parent = await zygote()
            if isinstance(parent, LinkedProcess) and parent.forks is not None:
                try:
                    return LinkedProcess(await parent.forks.fork(child_id, spec), what)
                except (OSError, trio.TooSlowError) as exc:
                    log.warning(
                        "%s: the zygote could not fork it (%s); exec instead", child_id, exc
                    )
        return LinkedProcess(await launch(spec), what)
