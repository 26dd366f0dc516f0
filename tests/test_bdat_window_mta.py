"""The BDAT window against real Postfix and Exim, started privately on loopback (tests/mta.py).

Both offer PIPELINING and CHUNKING, so ``send_many`` keeps up to ``bdat_window`` messages in
flight; what each server stored is read back from its queue: every accepted recipient exactly once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import pytest
from mta import MTA, REFUSED, private_exim, private_postfix

from smtp_fsm import AsyncSMTPClient, ServerDisconnected, SMTPClient
from smtp_fsm.results import Outcome, SendResult
from smtp_fsm.trace import TraceStep

Item = tuple[str, list[str], bytes]
Send = Callable[[MTA, list[Item]], tuple[list[SendResult], list[TraceStep]]]

SERVERS: dict[str, Callable[[], AbstractContextManager[MTA]]] = {
    "postfix": private_postfix,
    "exim": private_exim,
    # Postfix 3.7's answer to pipelining abuse: it must not take a window sent as RFC 2920 allows for one
    "postfix-forbid-unauth-pipelining": lambda: private_postfix(smtpd_forbid_unauth_pipelining="yes"),
}
WINDOW = 16


def send_sync(server: MTA, items: list[Item]) -> tuple[list[SendResult], list[TraceStep]]:
    with SMTPClient(server.host, server.port, timeout=20, local_hostname="client.test", bdat_window=WINDOW,
                    trace=True) as client:
        return client.send_many(items), client.trace


def send_async(server: MTA, items: list[Item]) -> tuple[list[SendResult], list[TraceStep]]:
    async def main() -> tuple[list[SendResult], list[TraceStep]]:
        async with AsyncSMTPClient(server.host, server.port, timeout=20, local_hostname="client.test",
                                   bdat_window=WINDOW, trace=True) as client:
            return await client.send_many(items), client.trace

    return asyncio.run(main())


@pytest.fixture(params=list(SERVERS))
def server(request: pytest.FixtureRequest) -> Iterator[MTA]:
    with SERVERS[request.param]() as mta:
        yield mta


def message(n: int, sender: str = "sender@example.org", recipients: list[str] | None = None) -> Item:
    body = b"".join(b"line %d of message %d\r\n" % (k, n) for k in range(20))
    return (sender, recipients if recipients is not None else [f"r{n}.a@example.org", f"r{n}.b@example.org"],
            b"Subject: message %d\r\nFrom: sender@example.org\r\n\r\n" % n + body)


def stored_recipients(server: MTA) -> list[str]:
    return sorted(recipient for queued in server.queued() for recipient in queued.recipients)


@pytest.mark.parametrize("send", [send_sync, send_async])
def test_a_window_delivers_each_message_once_to_a_real_server(server: MTA, send: Send,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    items = [message(n) for n in range(40)]
    with caplog.at_level(logging.INFO, logger="smtp_fsm"):
        results, trace = send(server, items)
    assert [result.outcome for result in results] == [Outcome.DELIVERED] * len(items)
    assert stored_recipients(server) == sorted(rcpt for item in items for rcpt in item[1])
    assert not [r for r in caplog.records if "one message in flight" in r.getMessage()]  # no fallback
    # the window was used: its first write held WINDOW whole messages, then each final reply sent one more
    assert [step.sent.count(b"MAIL FROM:") for step in trace if step.sent.count(b"MAIL FROM:")] == (
        [WINDOW] + [1] * (len(items) - WINDOW))


@pytest.mark.parametrize("send", [send_sync, send_async])
def test_refusals_inside_the_window_touch_only_their_own_message(server: MTA, send: Send) -> None:
    """A refused sender, a message whose only recipient is refused (the server then refuses its chunk;
    Exim keeps its MAIL open) and one from another sender with a refused and an accepted recipient,
    between normal messages: each message's recipients are stored once, under its own sender."""
    items = []
    for n in range(0, 24, 4):
        items += [message(n), message(n + 1, sender=REFUSED), message(n + 2, recipients=[REFUSED]),
                  message(n + 3, sender="other@example.org", recipients=[REFUSED, f"r{n + 3}.ok@example.org"])]
    results, _ = send(server, items)
    expected = []
    for n, result in enumerate(results):
        if n % 4 == 0:
            assert result.outcome is Outcome.DELIVERED
            assert sorted(result.accepted) == sorted(items[n][1])
            expected += items[n][1]
        elif n % 4 in (1, 2):
            assert result.outcome is Outcome.REFUSED, result
            assert not result.accepted
        else:
            assert result.outcome is Outcome.DELIVERED, result
            assert list(result.accepted) == [f"r{n}.ok@example.org"]
            assert list(result.refused) == [REFUSED]
            expected.append(f"r{n}.ok@example.org")
    assert stored_recipients(server) == sorted(expected)  # no message stored twice, none refused stored
    senders = {rcpt: queued.sender for queued in server.queued() for rcpt in queued.recipients}
    assert senders == {rcpt: "other@example.org" if ".ok@" in rcpt else "sender@example.org" for rcpt in expected}


@pytest.mark.parametrize("send", [send_sync, send_async])
def test_a_server_that_keeps_a_refused_transaction_open_costs_one_503(server: MTA, send: Send,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    """One sender, and now and then a message whose only recipient is refused: Exim refuses its BDAT and
    keeps its MAIL open, so it answers the MAIL behind it 503 and takes that message's RCPTs and content
    into the open transaction (the same envelope: the same copy).  Exim counts each such 503 a protocol
    error and drops the connection at the fourth: after the first, the window falls to one message."""
    refused = {3, 10, 17, 24, 31}
    items = [message(n, recipients=[REFUSED] if n in refused else None) for n in range(40)]
    with caplog.at_level(logging.INFO, logger="smtp_fsm"):
        results, _ = send(server, items)
    assert [r.outcome for r in results] == [Outcome.REFUSED if n in refused else Outcome.DELIVERED
                                            for n in range(40)]
    assert stored_recipients(server) == sorted(r for n, item in enumerate(items) if n not in refused for r in item[1])
    fallbacks = [r.getMessage() for r in caplog.records if "one message in flight" in r.getMessage()]
    if server.name == "exim":
        assert len(fallbacks) == 1 and "kept a refused transaction open" in fallbacks[0], fallbacks
    else:  # Postfix ends a transaction whose BDAT it refused
        assert not fallbacks


def test_exim_drops_a_window_that_holds_four_open_transactions_and_the_default_window_cannot() -> None:
    """Four messages in a row whose only recipient is refused, each followed by another in flight: Exim
    answers four MAILs 503 before the first 503 can shrink the window, and drops the connection at the
    fourth (smtp_max_synprot_errors, 3 by default).  With the default window, 4, at most three messages
    are behind the first refused one: the connection survives and every message has its outcome."""
    refused = {2, 3, 4, 5}
    items = [message(n, recipients=[REFUSED] if n in refused else None) for n in range(12)]
    with private_exim() as exim:
        with SMTPClient(exim.host, exim.port, timeout=20, local_hostname="client.test") as client:
            assert client.options.session.bdat_window == 4
            results = client.send_many(items)
        assert [r.outcome for r in results] == [Outcome.REFUSED if n in refused else Outcome.DELIVERED
                                                for n in range(12)]
        assert stored_recipients(exim) == sorted(r for n, item in enumerate(items) if n not in refused
                                                 for r in item[1])
    with private_exim() as exim:
        with pytest.raises(ServerDisconnected) as cut, SMTPClient(exim.host, exim.port, timeout=20,
                                                                 local_hostname="client.test",
                                                                 bdat_window=8) as client:
            client.send_many(items)
        error = cut.value
        assert error.uncertain  # (the messages in flight when Exim dropped the connection)
        delivered = {r for result in error.completed if result.outcome is Outcome.DELIVERED for r in result.accepted}
        uncertain = {r for item in error.uncertain for r in item[1]}
        assert delivered <= set(stored_recipients(exim)) <= delivered | uncertain
