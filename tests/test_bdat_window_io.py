"""The BDAT window over real sockets: both drivers, strict servers, and a server that would deadlock."""

from __future__ import annotations

import asyncio
import logging

import pytest
from bdat_server import BdatServer

from smtp_fsm import AsyncSMTPClient, SMTPClient
from smtp_fsm.results import Outcome

COUNT = 20


def messages(count: int = COUNT, size: int = 200, recipients: int = 1) -> list[tuple[str, list[str], bytes]]:
    body = (b"x" * 78 + b"\r\n") * (size // 80) or b"x\r\n"
    return [("a@example.org", [f"r{n}.{k}@example.org" for k in range(recipients)],
             b"Subject: %d\r\n\r\n" % n + body) for n in range(count)]


def send_sync(server: BdatServer, items: list[tuple[str, list[str], bytes]], **options: object) -> list[Outcome]:
    with SMTPClient(server.host, server.port, timeout=10, local_hostname="client.test", **options) as client:
        return [result.outcome for result in client.send_many(items)]


def send_async(server: BdatServer, items: list[tuple[str, list[str], bytes]], **options: object) -> list[Outcome]:
    async def main() -> list[Outcome]:
        async with AsyncSMTPClient(server.host, server.port, timeout=10, local_hostname="client.test",
                                   **options) as client:
            return [result.outcome for result in await client.send_many(items)]

    return asyncio.run(main())


def stored_once(server: BdatServer, items: list[tuple[str, list[str], bytes]]) -> None:
    subjects = sorted(stored.content.split(b"\r\n", 1)[0] for stored in server.stored)
    assert subjects == sorted(item[2].split(b"\r\n", 1)[0] for item in items)  # each message exactly once


@pytest.mark.parametrize("send", [send_sync, send_async])
@pytest.mark.parametrize("bdat_window", [1, 4, 16])
def test_a_window_sends_each_message_once_in_fewer_round_trips(send: object, bdat_window: int) -> None:
    items = messages()
    with BdatServer() as server:
        outcomes = send(server, items, bdat_window=bdat_window)  # type: ignore[operator]
    assert outcomes == [Outcome.DELIVERED] * COUNT
    stored_once(server, items)
    if bdat_window == 1:
        assert server.groups_with_transaction_replies >= COUNT
    else:  # the last messages of a window and the first of the next can share a read: about COUNT / W
        assert server.groups_with_transaction_replies <= COUNT // bdat_window + 3


@pytest.mark.parametrize("send", [send_sync, send_async])
@pytest.mark.parametrize("strict", ["rfc3030", "group"])
def test_strict_servers_make_the_window_fall_back_and_lose_nothing(send: object, strict: str,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    items = messages(8)
    with caplog.at_level(logging.INFO, logger="smtp_fsm"), BdatServer(strict=strict) as server:
        outcomes = send(server, items, bdat_window=8)  # type: ignore[operator]
    assert outcomes == [Outcome.DELIVERED] * 8  # none reported refused for the server's reading
    stored_once(server, items)
    assert server.refused_for_order > 0  # (the server did refuse the window's first groups)
    fallbacks = [r.getMessage() for r in caplog.records if "one message in flight" in r.getMessage()]
    assert len(fallbacks) == 1, fallbacks  # said once, with the reply that told
    assert ("BDAT sent with its MAIL" if strict == "rfc3030" else "MAIL sent behind") in fallbacks[0]


def test_a_server_that_stops_reading_until_its_replies_are_read_does_not_deadlock_the_blocking_driver() -> None:
    """RFC 2920 §3.1: replies longer than the client's receive buffer, and behind them the client writes
    8 x 1 MiB, more than its send buffer can take (Linux grows it to 4 MiB): without reading while it
    writes, both ends would wait for each other."""
    items = messages(8, size=1 << 20, recipients=4)
    with BdatServer(reply_padding=60_000) as server:
        outcomes = send_sync(server, items, bdat_window=8)  # a deadlock ends in the 10 s timeout, as SMTPTimeout
    assert outcomes == [Outcome.DELIVERED] * 8
    stored_once(server, items)


def test_the_asyncio_driver_reads_while_it_writes_by_construction() -> None:
    items = messages(8, size=1 << 20, recipients=4)
    with BdatServer(reply_padding=60_000) as server:
        outcomes = send_async(server, items, bdat_window=8)
    assert outcomes == [Outcome.DELIVERED] * 8
    stored_once(server, items)
