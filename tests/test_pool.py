"""The connection pools (issue 22): nothing lost, nothing sent twice, under faults and at the end."""

from __future__ import annotations

import asyncio
import math
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Any

import pytest
from chaos_server import ChaosServer, Faults

from smtp_fsm import AsyncSMTPPool, AuthenticationError, LocalProtocolError, PoolClosed, SMTPConnectError, SMTPPool
from smtp_fsm.pool.aio import Room
from smtp_fsm.pool.ledger import Ledger, Sent
from smtp_fsm.results import Outcome, SendResult
from smtp_fsm.testing.esmtp import ESMTPServer
from smtp_fsm.testing.servers import LocalSMTPServer

Item = tuple[str, list[str], bytes]
NO_FAULTS = Faults(cut=0, shutdown=0, transient=0, cut_after_store=0, permanent_rcpt=0)
FAST_RETRIES: dict[str, Any] = {"attempts": 10, "backoff": 0.005, "max_backoff": 0.05}


def messages(count: int, recipients: int = 2) -> list[Item]:
    return [("sender@example.org", [f"r{n}.{k}@example.org" for k in range(recipients)],
             b"Subject: m%d\r\nFrom: sender@example.org\r\n\r\nmessage %d\r\n" % (n, n)) for n in range(count)]


def send_all_async(host: str, port: int, items: Iterable[Item], key: Any = None, **keywords: Any) -> list[Sent]:
    async def main() -> list[Sent]:
        async with AsyncSMTPPool(host, port, local_hostname="client.test", timeout=10, **keywords) as pool:
            return [sent async for sent in pool.send_all(items, key=key)]

    return asyncio.run(main())


def send_all_sync(host: str, port: int, items: Iterable[Item], key: Any = None, **keywords: Any) -> list[Sent]:
    with SMTPPool(host, port, local_hostname="client.test", timeout=10, **keywords) as pool:
        return list(pool.send_all(items, key=key))


SendAll = Callable[..., list[Sent]]
POOLS = [pytest.param(send_all_async, id="async"), pytest.param(send_all_sync, id="threads")]


def by_key(sent: list[Sent], count: int) -> list[SendResult]:
    keys = [s.key for s in sent]
    assert sorted(keys) == list(range(count)), "every submitted message has exactly one result"  # type: ignore[type-var]
    results: dict[Any, SendResult] = {s.key: s.result for s in sent}
    return [results[n] for n in range(count)]


def uncertain_recipients(result: SendResult) -> set[str]:
    if result.outcome is Outcome.UNCERTAIN:
        return set(result.recipients)
    return {rcpt for rcpt, fate in result.unfinished.items() if fate is Outcome.UNCERTAIN}


@pytest.mark.parametrize("send_all", POOLS)
@pytest.mark.parametrize("chunking", [False, True], ids=["data", "bdat"])
def test_under_random_faults_nothing_is_lost_and_nothing_is_stored_twice(send_all: SendAll, chunking: bool) -> None:
    """Cuts at any point, 421s, 451s to MAIL, RCPT and the content, 550s to some RCPTs, and cuts after
    storing a message but before its 250: every message gets one result, every recipient reported
    delivered was stored exactly once, an uncertain one at most once, any other never."""
    count = 2000
    items = messages(count)
    with ChaosServer(Faults(), seed=22 + chunking, chunking=chunking) as server:
        results = by_key(send_all(server.host, server.port, items, max_connections=8, **FAST_RETRIES), count)
    counts = {outcome: 0 for outcome in Outcome}
    for n, result in enumerate(results):
        counts[result.outcome] += 1
        uncertain = uncertain_recipients(result)
        for rcpt in items[n][1]:
            stored = server.stored[(f"m{n}", rcpt)]
            if rcpt in result.accepted:
                assert stored == 1, (n, rcpt, result)
            elif rcpt in uncertain:
                assert stored <= 1, (n, rcpt, result)
            else:
                assert stored == 0, (n, rcpt, result)
                assert rcpt in result.refused or result.outcome in (Outcome.NOT_SENT, Outcome.REFUSED) \
                    or result.unfinished.get(rcpt) is Outcome.NOT_SENT, (n, rcpt, result)
    stored_total = sum(server.stored.values())
    delivered_total = sum(len(result.accepted) for result in results)
    assert delivered_total <= stored_total <= delivered_total + sum(len(uncertain_recipients(r)) for r in results)
    # the faults did happen, and the pool went on through them
    assert server.connections > 8 and counts[Outcome.UNCERTAIN] > 0
    assert counts[Outcome.DELIVERED] > count / 2, counts  # (BDAT: a cut leaves the whole window uncertain)
    print(f"\nfault run ({'BDAT' if chunking else 'DATA'}, {send_all.__name__}): {counts}, "
          f"{server.connections} connections, {stored_total} copies stored, {delivered_total} reported delivered")


def test_resending_uncertain_messages_is_the_callers_choice() -> None:
    """With ``resend_uncertain=True`` a message cut after it was stored goes again: some recipients
    are then stored twice, which is what the option means; without it (above) never."""
    count = 600
    items = messages(count, recipients=1)
    faults = Faults(cut=0, shutdown=0, transient=0, cut_after_store=0.05, permanent_rcpt=0)
    with ChaosServer(faults, seed=5) as server:
        results = by_key(send_all_async(server.host, server.port, items, resend_uncertain=True,
                                        **FAST_RETRIES), count)
    assert max(server.stored.values()) >= 2  # (the option's price, seen)
    assert all(result.outcome is Outcome.DELIVERED for result in results)


@pytest.mark.parametrize("send_all", POOLS)
def test_a_real_server_gets_each_message_once_and_connections_are_renewed(send_all: SendAll) -> None:
    count = 45
    items = messages(count, recipients=1)
    with LocalSMTPServer(pipelining=True) as server:
        results = by_key(send_all(server.host, server.port, items, max_connections=2,
                                  max_messages_per_connection=10, batch=4), count)
        received = sorted(message.message["Subject"] for message in server.messages)
    assert all(result.outcome is Outcome.DELIVERED for result in results)
    assert received == sorted(f"m{n}" for n in range(count))


def test_max_messages_per_connection_says_quit_and_opens_another() -> None:
    async def main(server: ChaosServer) -> AsyncSMTPPool:
        async with AsyncSMTPPool(server.host, server.port, local_hostname="client.test", max_connections=1,
                                 max_messages_per_connection=10, batch=4, trace=True) as pool:
            futures = [await pool.submit(item) for item in messages(35)]
            for future in futures:
                assert (await future).outcome is Outcome.DELIVERED
        return pool

    with ChaosServer(NO_FAULTS) as server:
        pool = asyncio.run(main(server))
    assert pool.connections_opened == math.ceil(35 / 10) == server.connections
    # one trace per connection, each ending with a polite QUIT
    assert len(pool.traces) == 4
    for trace in pool.traces:
        assert [(step.sent, step.state_after) for step in trace[-2:]] == [(b"QUIT\r\n", "quit"), (b"", "closed")]
    sent = [b"".join(step.sent for step in trace).count(b"MAIL FROM:") for trace in pool.traces]
    assert sent == [10, 10, 10, 5]


@pytest.mark.parametrize("send_all", POOLS)
def test_an_authentication_failure_stops_new_connections_and_fails_the_queue(send_all: SendAll) -> None:
    with ChaosServer(NO_FAULTS, refuse_auth=True) as server:
        results = by_key(send_all(server.host, server.port, messages(200), max_connections=4, username="u",
                                  password="wrong", allow_insecure_auth=True, **FAST_RETRIES), 200)
    assert all(result.outcome is Outcome.NOT_SENT for result in results)
    assert all(isinstance(result.error, AuthenticationError) and result.error.code == 535 for result in results)
    assert server.auth_attempts <= 4  # (no lockout storm: at most one try per connection slot)


def test_closing_past_the_deadline_says_what_became_of_each_message() -> None:
    """The server stores the first message and never answers: after the deadline, that message is
    uncertain (its content left), the one pipelined behind it and the queued ones not sent."""

    async def main(server: ChaosServer) -> list[SendResult]:
        pool = AsyncSMTPPool(server.host, server.port, local_hostname="client.test", max_connections=1, batch=2)
        futures = [await pool.submit(item) for item in messages(5)]
        for _ in range(500):  # until the first message is stored (its final reply never comes); bounded
            if server.stored:
                break
            await asyncio.sleep(0.01)
        await pool.close(timeout=0.5)
        return [future.result() for future in futures]

    with ChaosServer(NO_FAULTS, stall_after_store=True) as server:
        results = asyncio.run(main(server))
    assert [r.outcome for r in results] == [Outcome.UNCERTAIN] + [Outcome.NOT_SENT] * 4
    assert all(isinstance(r.error, PoolClosed) for r in results)


def test_the_blocking_pool_closes_past_its_deadline_alike() -> None:
    with ChaosServer(NO_FAULTS, stall_after_store=True) as server:
        pool = SMTPPool(server.host, server.port, local_hostname="client.test", max_connections=1, batch=2)
        futures = [pool.submit(item) for item in messages(5)]
        for _ in range(500):  # until the first message is stored (its final reply never comes); bounded
            if server.stored:
                break
            time.sleep(0.01)
        pool.close(timeout=0.5)
        results = [future.result(timeout=5) for future in futures]
    assert [r.outcome for r in results] == [Outcome.UNCERTAIN] + [Outcome.NOT_SENT] * 4
    assert all(isinstance(r.error, PoolClosed) for r in results)


class Reading:
    """Items read lazily, counting how many were read."""

    def __init__(self, count: int) -> None:
        self.items = messages(count, recipients=1)
        self.read = 0

    def __iter__(self) -> Iterator[Item]:
        for item in self.items:
            self.read += 1
            yield item


def test_send_all_reads_no_further_ahead_than_max_pending() -> None:
    """Backpressure: the items are read as results come, never more than ``max_pending`` ahead."""
    source = Reading(300)

    async def main(server: ChaosServer) -> list[int]:
        ahead = []
        async with AsyncSMTPPool(server.host, server.port, local_hostname="client.test", max_pending=20) as pool:
            async for number, _ in enumerate_async(pool.send_all(source)):
                ahead.append(source.read - (number + 1))
        return ahead

    with ChaosServer(NO_FAULTS) as server:
        ahead = asyncio.run(main(server))
    assert len(ahead) == 300 and max(ahead) <= 20


def test_the_blocking_send_all_reads_no_further_ahead_than_max_pending() -> None:
    source = Reading(300)
    ahead = []
    with ChaosServer(NO_FAULTS) as server, SMTPPool(server.host, server.port, local_hostname="client.test",
                                                    max_pending=20) as pool:
        for number, sent in enumerate(pool.send_all(source, key=lambda item: str(item[1][0]))):  # type: ignore[index]
            ahead.append(source.read - (number + 1))
            assert sent.key == sent.result.recipients[0]  # (a key of the caller's)
    assert len(ahead) == 300 and max(ahead) <= 20


@pytest.mark.parametrize("pool_class", [AsyncSMTPPool, SMTPPool], ids=["async", "threads"])
def test_a_message_submitted_wakes_one_waiting_connection_not_all(
        pool_class: type[AsyncSMTPPool] | type[SMTPPool], monkeypatch: pytest.MonkeyPatch) -> None:
    """Messages submitted one at a time (a queue worker's trickle) to 8 connections: each wakes one
    connection, which takes it; the other seven sleep on (woken for every message, they cost more
    CPU than the message itself did)."""
    from smtp_fsm.pool.connection import Connection

    steps = []
    real = Connection.next_step

    def counted(self: Connection[Any], now: float) -> Any:
        steps.append(now)
        return real(self, now)

    monkeypatch.setattr(Connection, "next_step", counted)
    items = messages(40, recipients=1)

    async def trickle_async(server: ChaosServer) -> list[SendResult]:
        async with AsyncSMTPPool(server.host, server.port, local_hostname="client.test", max_connections=8) as pool:
            return [await (await pool.submit(item)) for item in items]

    def trickle_threads(server: ChaosServer) -> list[SendResult]:
        with SMTPPool(server.host, server.port, local_hostname="client.test", max_connections=8) as pool:
            return [pool.submit(item).result(timeout=10) for item in items]

    with ChaosServer(NO_FAULTS) as server:
        results = asyncio.run(trickle_async(server)) if pool_class is AsyncSMTPPool else trickle_threads(server)
    assert [result.outcome for result in results] == [Outcome.DELIVERED] * 40
    # Per message: the woken connection takes it, then finds nothing; each of the 8 starts and ends once.
    assert len(steps) <= 3 * len(items) + 3 * 8, len(steps)


@pytest.mark.parametrize("pool_class", [AsyncSMTPPool, SMTPPool], ids=["async", "threads"])
def test_a_retry_goes_when_due_though_the_connection_that_waited_for_it_took_other_work(
        pool_class: type[AsyncSMTPPool] | type[SMTPPool]) -> None:
    """A 451 schedules a retry; a new message then wakes a waiting connection -- perhaps the one that
    was waiting for the retry's time, and now sends the new message, slowly.  Another waiting
    connection takes the retry when it falls due: it is delivered before the slow message is."""
    retry = ("sender@example.org", ["retry@example.org"], b"Subject: m0\r\n\r\nretried\r\n")
    slow = ("sender@example.org", ["slow@example.org"], b"Subject: m1\r\n\r\nslow\r\n")
    keywords: dict[str, Any] = {"local_hostname": "client.test", "max_connections": 2, "backoff": 0.2,
                                "max_backoff": 0.2, "timeout": 10}

    async def in_order_async(server: ChaosServer) -> list[str]:
        async with AsyncSMTPPool(server.host, server.port, **keywords) as pool:
            first = await pool.submit(retry, key="retry")
            await asyncio.sleep(0.1)  # (its 451 is in: the retry is due 0.1-0.2 s from now)
            second = await pool.submit(slow, key="slow")
            order = []
            for done in asyncio.as_completed([first, second]):
                order.append((await done).recipients[0])
            return order

    def in_order_threads(server: ChaosServer) -> list[str]:
        with SMTPPool(server.host, server.port, **keywords) as pool:
            order: list[str] = []
            first = pool.submit(retry)
            first.add_done_callback(lambda f: order.append(f.result().recipients[0]))
            time.sleep(0.1)
            second = pool.submit(slow)
            second.add_done_callback(lambda f: order.append(f.result().recipients[0]))
            second.result(timeout=10)
            first.result(timeout=10)
            return order

    with ChaosServer(NO_FAULTS, later={"retry@example.org"}, slow={"slow@example.org"}) as server:
        order = asyncio.run(in_order_async(server)) if pool_class is AsyncSMTPPool else in_order_threads(server)
        assert server.stored[("m0", "retry@example.org")] == 1
    assert order == ["retry@example.org", "slow@example.org"]


@pytest.mark.parametrize("pool_class", [AsyncSMTPPool, SMTPPool], ids=["async", "threads"])
def test_after_a_fatal_refusal_an_idle_connection_says_quit_at_once(
        pool_class: type[AsyncSMTPPool] | type[SMTPPool]) -> None:
    """The second connection's greeting is a 554 (fatal: no connection will do better) while the first
    connection idles after its message: that one says QUIT then, not when idle_timeout runs out."""
    items = messages(2, recipients=1)
    keywords: dict[str, Any] = {"local_hostname": "client.test", "max_connections": 2, "batch": 1,
                                "max_pending": 2, "idle_timeout": 60, "timeout": 10}

    async def outcomes_async(server: ChaosServer) -> tuple[list[Outcome], int]:
        async with AsyncSMTPPool(server.host, server.port, **keywords) as pool:
            futures = [await pool.submit(item) for item in items]
            outcomes = [(await future).outcome for future in futures]
            return outcomes, await asyncio.to_thread(open_after_results, server)

    def outcomes_threads(server: ChaosServer) -> tuple[list[Outcome], int]:
        with SMTPPool(server.host, server.port, **keywords) as pool:
            futures = [pool.submit(item) for item in items]
            outcomes = [future.result(timeout=10).outcome for future in futures]
            return outcomes, open_after_results(server)

    def open_after_results(server: ChaosServer) -> int:
        for _ in range(100):  # bounded: 5 s, far less than idle_timeout
            if server.open_now == 0:
                break
            time.sleep(0.05)
        return server.open_now

    with ChaosServer(NO_FAULTS, greetings={2: (0.5, b"554 5.3.2 chaos: go away\r\n")}) as server:
        outcomes, still_open = (asyncio.run(outcomes_async(server)) if pool_class is AsyncSMTPPool
                                else outcomes_threads(server))
    assert sorted(outcomes) == sorted([Outcome.DELIVERED, Outcome.NOT_SENT]) and still_open == 0


async def enumerate_async(iterator: AsyncIterator[Sent]) -> AsyncIterator[tuple[int, Sent]]:
    number = 0
    async for item in iterator:
        yield number, item
        number += 1


@pytest.mark.parametrize("send_all", POOLS)
def test_a_message_the_servers_limits_rule_out_fails_alone_and_the_batch_goes_on(send_all: SendAll) -> None:
    """Over the server's SIZE, a message makes ``send_many`` refuse its whole batch before writing a byte:
    each message then goes alone, and only that one ends ``not_sent`` with the error."""
    items = messages(5, recipients=1)
    items[2] = ("sender@example.org", ["big@example.org"], b"Subject: m2\r\n\r\n" + (b"x" * 998 + b"\r\n") * 1100)
    with ESMTPServer() as server:  # (SIZE 1000000)
        results = by_key(send_all(server.host, server.port, items, max_connections=1, batch=8), 5)
        stored = sorted(message.rcpts[0] for message in server.messages)
    assert [r.outcome for r in results] == [Outcome.DELIVERED] * 2 + [Outcome.NOT_SENT] + [Outcome.DELIVERED] * 2
    assert isinstance(results[2].error, LocalProtocolError) and "SIZE" in str(results[2].error)
    assert stored == [f"RCPT TO:<r{n}.0@example.org>" for n in (0, 1, 3, 4)]  # each once, the big one never


@pytest.mark.parametrize("send_all", POOLS)
def test_a_server_that_is_down_costs_each_message_its_attempts_then_not_sent(send_all: SendAll) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]  # (closed below: nothing listens there while the pool tries)
    results = by_key(send_all("127.0.0.1", port, messages(6), max_connections=2, attempts=3, backoff=0.01), 6)
    assert all(r.outcome is Outcome.NOT_SENT and isinstance(r.error, SMTPConnectError) for r in results)


def test_closing_ends_every_connection_once_the_last_message_is_done() -> None:
    """Connections woken by close while a message is still in flight are woken again when it finishes."""
    with ChaosServer(NO_FAULTS, reply_delay=0.3) as server:
        pool = SMTPPool(server.host, server.port, local_hostname="client.test", max_connections=4)
        future = pool.submit(messages(1)[0])
        pool.close(timeout=10)
        assert future.result(timeout=0).outcome is Outcome.DELIVERED
        assert not [thread for thread in pool._threads if thread.is_alive()]


def test_a_second_round_of_submissions_is_waited_for_at_close() -> None:
    async def main(server: ChaosServer) -> list[SendResult]:
        pool = AsyncSMTPPool(server.host, server.port, local_hostname="client.test", max_connections=2)
        await (await pool.submit(messages(1)[0]))  # (the pool drained once)
        futures = [await pool.submit(item) for item in messages(10)]
        await pool.close(timeout=10)
        return [future.result() for future in futures]

    with ChaosServer(NO_FAULTS, reply_delay=0.02) as server:
        assert [r.outcome for r in asyncio.run(main(server))] == [Outcome.DELIVERED] * 10


def test_closing_while_a_connection_opens_sends_nothing_after() -> None:
    """The greeting takes longer than the deadline: the message is not sent, then or later."""

    async def main(server: ChaosServer) -> SendResult:
        pool = AsyncSMTPPool(server.host, server.port, local_hostname="client.test", max_connections=1)
        future = await pool.submit(messages(1)[0])
        await asyncio.sleep(0.1)
        await pool.close(timeout=0.3)
        return future.result()

    with ChaosServer(NO_FAULTS, greet_delay=2.0) as server:
        result = asyncio.run(main(server))
        assert result.outcome is Outcome.NOT_SENT and isinstance(result.error, PoolClosed)
        pool = SMTPPool(server.host, server.port, local_hostname="client.test", max_connections=1)
        future = pool.submit(messages(1)[0])
        time.sleep(0.1)
        pool.close(timeout=0.3)
        result = future.result(timeout=10)  # (once the greeting came, the connection saw the pool stopped)
        assert result.outcome is Outcome.NOT_SENT and isinstance(result.error, PoolClosed)
        for thread in pool._threads:
            thread.join(10)
        assert server.mails == 0


def test_a_submission_waiting_for_room_when_the_pool_closes_is_refused() -> None:
    async def main(server: ChaosServer) -> tuple[SendResult, BaseException | None]:
        pool = AsyncSMTPPool(server.host, server.port, local_hostname="client.test", max_pending=1)
        first = await pool.submit(messages(1)[0])
        second = asyncio.ensure_future(pool.submit(messages(2)[1]))
        await asyncio.sleep(0.05)  # (the second waits for room)
        await pool.close(timeout=10)
        await asyncio.wait([second], timeout=5)
        return first.result(), second.exception()

    with ChaosServer(NO_FAULTS, reply_delay=0.2) as server:
        first, refused = asyncio.run(main(server))
    assert first.outcome is Outcome.DELIVERED and isinstance(refused, PoolClosed)


def test_the_room_hands_places_in_order_and_a_cancelled_waiter_loses_none() -> None:
    """``max_pending``'s counter: first come first served; a waiter cancelled while it waits leaves the
    queue, one cancelled just after it was handed a place passes the place on."""
    async def main() -> tuple[list[str], int, bool]:
        room = Room(1)
        assert room.acquire() is None  # (room at once: nothing to await)
        order: list[str] = []

        async def wait(name: str) -> None:
            waiting = room.acquire()
            assert waiting is not None
            await waiting
            order.append(name)

        a, b, c, d = (asyncio.ensure_future(wait(name)) for name in "abcd")
        await asyncio.sleep(0)
        b.cancel()  # cancelled while waiting
        await asyncio.sleep(0)
        room.release()  # -> a
        await asyncio.sleep(0)
        room.release()  # -> c (b left) ...
        c.cancel()  # ... cancelled before it ran: it passes the place to d
        await asyncio.wait([a, b, c, d], timeout=5)
        room.release()  # d's place back: nobody waits
        return order, room.free, b.cancelled() and c.cancelled()

    order, free, cancelled = asyncio.run(main())
    assert order == ["a", "d"] and free == 1 and cancelled


def test_a_callback_that_submits_the_next_message_does_not_block_the_pool() -> None:
    done: list[SendResult] = []
    items = iter(messages(5, recipients=1))
    finished = threading.Event()
    with ChaosServer(NO_FAULTS) as server, SMTPPool(server.host, server.port, local_hostname="client.test",
                                                    max_pending=1) as pool:
        def chain(future: Future[SendResult]) -> None:
            done.append(future.result())
            item = next(items, None)
            if item is None:
                finished.set()
            else:
                pool.submit(item).add_done_callback(chain)

        pool.submit(next(items)).add_done_callback(chain)
        assert finished.wait(10)
    assert [r.outcome for r in done] == [Outcome.DELIVERED] * 5


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # (the bug, loud as meant)
@pytest.mark.parametrize("send_all", POOLS)
def test_a_bug_in_a_connection_loop_fails_every_message_instead_of_hanging(
        send_all: SendAll, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> list[Any]:
        raise RuntimeError("a bug")

    monkeypatch.setattr(Ledger, "settle", broken)
    with ChaosServer(NO_FAULTS) as server:
        results = by_key(send_all(server.host, server.port, messages(50), max_connections=2), 50)
    assert all(r.outcome in (Outcome.NOT_SENT, Outcome.UNCERTAIN) and "a bug" in str(r.error) for r in results)


def test_bad_arguments_raise_before_any_connection() -> None:
    with pytest.raises(LocalProtocolError, match="max_connections"):
        AsyncSMTPPool("127.0.0.1", max_connections=0)
    with pytest.raises(LocalProtocolError, match="attempts"):
        SMTPPool("127.0.0.1", attempts=0)
    with pytest.raises(LocalProtocolError, match="max_rate"):
        SMTPPool("127.0.0.1", max_rate=-1)
    with pytest.raises(LocalProtocolError):
        SMTPPool("127.0.0.1", port=0)  # (a connection keyword, checked by the client's own rules)
    with pytest.raises(LocalProtocolError, match="quit_after"):
        AsyncSMTPPool("127.0.0.1", quit_after="rcpt")
    pool = SMTPPool("127.0.0.1", 9)  # nothing listens: nothing was tried
    with pytest.raises(LocalProtocolError):
        pool.submit(("sender@example.org", [], b"x"))  # no recipients
    pool.close()
    with pytest.raises(PoolClosed):
        pool.submit(("sender@example.org", ["r@example.org"], b"x"))
    assert pool.connections_opened == 0
