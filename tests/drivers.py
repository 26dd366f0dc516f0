"""Run the same test through both drivers: the asyncio one behind a small blocking facade."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import smtp_fsm


class AsyncFacade:
    """Calls AsyncSMTPClient's coroutines on a private event loop, so a test reads the same for both."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self.client = smtp_fsm.AsyncSMTPClient(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.client, name)
        if inspect.iscoroutinefunction(attr):
            def call(*args: Any, **kwargs: Any) -> Any:
                return self._loop.run_until_complete(asyncio.wait_for(attr(*args, **kwargs), 30))
            return call
        return attr

    def __enter__(self) -> AsyncFacade:
        self._loop.run_until_complete(asyncio.wait_for(self.client.connect(), 30))
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self._loop.run_until_complete(asyncio.wait_for(self.client.__aexit__(*exc), 30))
        finally:
            self._loop.close()


DRIVERS = {"sync": smtp_fsm.SMTPClient, "async": AsyncFacade}


def make_client(kind: str, *args: Any, **kwargs: Any) -> Any:
    return DRIVERS[kind](*args, **kwargs)
