"""Every hostile behaviour through both drivers ends in the documented error, and nothing hangs.

The client's timeout is 1 s; the scripted server gives up on a connection
after 10 s, so each test is bounded whatever the client does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from smtp_fsm import (
    AsyncSMTPClient,
    RemoteProtocolError,
    ServerDisconnected,
    SMTPClient,
    SMTPError,
    SMTPTimeout,
)
from smtp_fsm.testing import ScriptedSMTPServer, hostile
from smtp_fsm.testing.scripted import Behaviour

MESSAGE = b"Subject: hi\r\n\r\nhello\r\n"
TIMEOUT = 1.0

# Steps (server replies) of this transcript: 1 greeting, 2 EHLO, 3 MAIL, 4 RCPT, 5 DATA, 6 final, 7 NOOP,
# 8 the second NOOP, 9 QUIT.
SESSION = """
S: 220 mx.example ESMTP scripted server, slow enough to outlast a one second deadline
C: EHLO client.example
S: 250-mx.example
S: 250-8BITMIME
S: 250 PIPELINING
C: MAIL FROM:<a@example.org>
C: RCPT TO:<b@example.net>
C: DATA
S: 250 2.1.0 sender ok
S: 250 2.1.5 recipient ok
S: 354 go ahead
C: Subject: hi
C:
C: hello
C: .
S: 250 2.0.0 queued
C: NOOP
S: 250 2.0.0 OK
C: NOOP
S: 250 2.0.0 OK
C: QUIT
S: 221 bye
"""


def run_sync(server: ScriptedSMTPServer) -> None:
    with SMTPClient(server.host, server.port, local_hostname="client.example", timeout=TIMEOUT,
                    data_timeout=TIMEOUT) as client:
        client.sendmail("a@example.org", ["b@example.net"], MESSAGE)
        client.noop()
        client.noop()


async def run_async(server: ScriptedSMTPServer) -> None:
    async with AsyncSMTPClient(server.host, server.port, local_hostname="client.example", timeout=TIMEOUT,
                               data_timeout=TIMEOUT) as client:
        await client.sendmail("a@example.org", ["b@example.net"], MESSAGE)
        await client.noop()
        await client.noop()


def play(driver: str, server: ScriptedSMTPServer) -> None:
    if driver == "sync":
        run_sync(server)
    else:
        # A second bound on top of the client's own deadline: a hang fails instead of blocking CI.
        async def bounded() -> None:
            await asyncio.wait_for(run_async(server), timeout=30)

        asyncio.run(bounded())


DRIVERS = ["sync", "async"]
CASES: list[tuple[str, Callable[[], Behaviour], type[SMTPError]]] = [
    ("close at the EHLO reply", lambda: hostile.close_at(2), ServerDisconnected),
    ("close at the final reply", lambda: hostile.close_at(6), ServerDisconnected),
    ("close in the middle of the EHLO reply", lambda: hostile.close_mid_reply(2), ServerDisconnected),
    ("close in the middle of the greeting", lambda: hostile.close_mid_reply(1), ServerDisconnected),
    ("greeting one byte every 50 ms", lambda: hostile.drip(1, 0.05), SMTPTimeout),
    ("over-long EHLO line", lambda: hostile.overlong_line(2), RemoteProtocolError),
    ("over-long final reply", lambda: hostile.overlong_line(6), RemoteProtocolError),
    ("garbage instead of the greeting", lambda: hostile.garbage(1), RemoteProtocolError),
    ("garbage instead of the RCPT reply", lambda: hostile.garbage(4, b"2x0 what\r\n"), RemoteProtocolError),
    ("unsolicited reply after the NOOP reply", lambda: hostile.extra_reply(7), RemoteProtocolError),
    ("421 instead of the greeting", lambda: hostile.shutdown_at(1), ServerDisconnected),
    ("421 instead of the DATA reply", lambda: hostile.shutdown_at(5), ServerDisconnected),
    ("421 instead of the final reply", lambda: hostile.shutdown_at(6), ServerDisconnected),
    ("never answer the greeting", lambda: hostile.never_answer(1), SMTPTimeout),
    ("never answer the final reply", lambda: hostile.never_answer(6), SMTPTimeout),
]


@pytest.mark.parametrize("driver", DRIVERS)
def test_the_transcript_itself_is_fine(driver):
    with ScriptedSMTPServer(SESSION) as server:
        play(driver, server)
    server.assert_ok()


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(("name", "make", "error"), CASES, ids=[case[0] for case in CASES])
def test_hostile_server(driver, name, make, error):
    server = ScriptedSMTPServer(SESSION, make()).start()
    try:
        with pytest.raises(error) as info:
            play(driver, server)
    finally:
        server.stop()
    if "421" in name:
        assert isinstance(info.value, ServerDisconnected)
        assert info.value.reply is not None and info.value.reply.code == 421
    # The client followed the transcript up to the hostile step, then gave up cleanly.
    server.assert_ok()


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_slow_reply_within_the_deadline_is_fine(driver):
    """Dripping is not an error in itself: only a reply that takes longer than the deadline is."""
    short = SESSION.replace("S: 220 mx.example ESMTP scripted server, slow enough to outlast a one second deadline",
                            "S: 220 mx")
    with ScriptedSMTPServer(short, hostile.drip(None, 0.001)) as server:
        play(driver, server)
    server.assert_ok()
