"""The asyncio driver: a transport, the engine, and a deadline per reply.  The API is ``DriverBase``'s,
as coroutines; here is only what asyncio changes: connecting, the pump, the TLS handshake.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Coroutine, Sequence
from typing import Any, Generic

from ._aio_io import Link, ReplyDeadline
from ._driver import GO_ON, Batch, DriverBase, GoOn, Until, Waited, install_api, single_result
from .errors import SMTPError
from .events import NEED_DATA, SessionEvent, StartTLS
from .replies import Reply
from .results import SendResult
from .session import ClientSession, replies_read


class AsyncSMTPClient(DriverBase[Coroutine[Any, Any, SendResult], Coroutine[Any, Any, list[SendResult]],
                                 Coroutine[Any, Any, Reply], Coroutine[Any, Any, Reply | None]]):
    """asyncio SMTP/LMTP client.  ``async with AsyncSMTPClient(host) as smtp: await smtp.send_message(msg)``.
    Cancelling a call closes the connection: a transaction is never left half-way for reuse."""

    _link: Link | None = None

    async def connect(self) -> AsyncSMTPClient:
        """Connect, read the greeting, negotiate EHLO/STARTTLS/AUTH; returns self."""
        self._require_no_connection()
        try:
            async with asyncio.timeout(self.timeout):
                self._link = await Link.open(self.host, self.port, self.family, self.source_address)
        except OSError as exc:
            raise self._connect_failed(exc) from exc
        try:
            self._peer_facts(*self._link.peer())
            if self.tls:  # apart from the connect, as in the blocking driver: a failed one is TLSError
                await self._handshake()
            self.ready = await self._pump(self._opened)
        except BaseException:
            self.close()
            raise
        return self

    async def __aenter__(self) -> AsyncSMTPClient:
        return await self.connect()

    async def __aexit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        try:
            if self._owes_quit() and not isinstance(exc, asyncio.CancelledError):  # cancelled: close at once
                await self.quit()
        except SMTPError:
            pass  # the with block's own exception, if any, is what the caller needs to see
        finally:
            self.close()

    async def _send_one(self, batch: Batch) -> SendResult:
        return single_result((await self._send_many(batch))[0])

    async def _send_many(self, batch: Batch) -> list[SendResult]:
        await self._before_work(batch.items)
        collector = self._start(batch)
        if collector.tickets:
            try:
                await self._pump(collector.take)
            except SMTPError as exc:
                raise collector.interrupted(exc) from None
        return collector.ordered()

    async def _command(self, verb: str) -> Reply:
        await self._before_work([])
        ticket = self.session.noop() if verb == "noop" else self.session.rset()
        return await self._pump(self._answered(ticket))

    async def _quit(self) -> Reply | None:
        self._begin_quit()
        try:
            return await self._pump(self._ended)
        finally:
            self.close()

    async def _before_work(self, items: Sequence[object]) -> None:
        """No transaction starts on a dead connection: take in what the idle server sent."""
        self._require_connection()
        assert self._link is not None
        await self._link.absorb(self.session)
        self._refuse_on_ended_session(items)

    async def _pump(self, until: Until[Waited]) -> Waited:
        link = self._link
        assert link is not None  # every caller required the connection first
        session = self.session
        deadline = ReplyDeadline(self._reply_timeout, self.timeout, replies_read(session),
                                 min(self.timeout, self.data_timeout))
        pilot = Autopilot(session, until, deadline, link)
        try:
            while True:
                out = pilot.unwritten or session.data_to_send()
                pilot.unwritten = b""
                if out:
                    # (no coroutine for the common write: it costs a microsecond per message)
                    if not link.write_now(out):
                        await link.write(out, session, deadline)
                    elif link.paused is not None:
                        await link.drained(deadline)
                    # The reply's deadline counts from the end of the write (RFC 5321 §4.5.3.2),
                    # as in the blocking driver; what is awaited may have changed (data_timeout).
                    deadline.restart()
                elif link.paused is not None:  # (the pilot's last write filled the transport's buffer)
                    await link.drained(deadline)
                    deadline.restart()
                if (done := pilot.done) is not GO_ON:
                    return done  # (what ``until`` returned for the call's last event)
                if pilot.error is not None:
                    raise pilot.error
                event = pilot.event or session.next_event()
                pilot.event = None
                if event is NEED_DATA:
                    deadline.replies_read(replies_read(session))
                    data = link.take_chunks()
                    if data:
                        session.receive_data(data)
                    elif not link.ended:
                        # Wait; meanwhile the transport's callback feeds the engine and writes what
                        # it answers (the pilot): this task wakes when it has something to do.
                        link.pilot = pilot
                        try:
                            await link.wait()
                        finally:
                            link.pilot = None
                    else:
                        try:
                            session.receive_data(await link.read())
                        except ssl.SSLError as exc:
                            raise self._abandon(self._read_failed(exc)) from exc
                elif isinstance(event, StartTLS):
                    deadline.suspended = True  # a timed-out handshake is TLSHandshakeTimeout, as in sync
                    try:
                        await self._handshake()
                    finally:
                        deadline.suspended = False
                    deadline.moved()
                    session.tls_established()
                elif (done := until(event)) is not GO_ON:
                    return done
        except SMTPError:
            self._flush_and_close()  # (the engine may have queued a courtesy QUIT before the error)
            raise
        except asyncio.CancelledError:
            if deadline.caller_cancelled():
                self.close()  # never left half-way for reuse
                raise
            raise self._abandon(self._timed_out(writing=deadline.expired_writing)) from None
        finally:
            deadline.cancel()

    async def _handshake(self) -> None:
        assert self._link is not None
        try:
            await self._link.start_tls(self._context(), self.server_hostname, self.timeout)
        except OSError as exc:  # a timeout, a certificate refused, the server cutting the handshake
            raise self._abandon(self._handshake_failed(exc)) from exc
        self.encrypted = True


install_api(AsyncSMTPClient, awaited=True)


class Autopilot(Generic[Waited]):
    """The pump's work for the common case, done in the transport's callback while the task waits.

    Per reply the pump would wake its task (a future, a task step, one more pass of the event
    loop); for a stream of messages nearly every reply only needs the engine fed, its answer
    written and a ``MessageSent`` handed to ``until``.  The pilot does that in ``data_received``
    and stops -- leaving what it could not do to the task, and waking it -- at anything else: the
    call's end, an error, a StartTLS, a write the transport could not take at once.
    """

    def __init__(self, session: ClientSession, until: Until[Waited], deadline: ReplyDeadline, link: Link) -> None:
        self.session, self.until, self.deadline, self.link = session, until, deadline, link
        # A cancelled call writes nothing more: its task may run only in the loop's next turn, after
        # this turn's callbacks (asyncio.wait_for's cancel): count the cancellations pending now.
        self.task = asyncio.current_task()
        self.cancels = self.task.cancelling() if self.task is not None else 0
        self.done: Waited | GoOn = GO_ON  # what ``until`` returned for the call's last event
        self.event: SessionEvent | None = None  # an event the task handles (StartTLS)
        self.error: Exception | None = None  # raised by the engine (or a bug), re-raised by the task
        self.unwritten = b""  # output the transport could not take at once (closing, paused)

    def __call__(self, data: bytes) -> bool:
        """Take ``data``; False when the task must (the link then keeps the bytes and wakes it)."""
        link, session, deadline = self.link, self.session, self.deadline
        if link.paused is not None or (self.task is not None and self.task.cancelling() > self.cancels):
            return False  # (the task takes the bytes: it drains, or it was cancelled and closes)
        try:
            session.receive_data(data)
            while True:
                out = session.data_to_send()
                if out:
                    if not link.write_now(out):
                        self.unwritten = out
                        return self._stop()
                    deadline.restart()
                    if link.paused is not None:
                        return self._stop()  # the task waits for the drain
                event = session.next_event()
                if event is NEED_DATA:
                    deadline.replies_read(replies_read(session))
                    return True
                if isinstance(event, StartTLS):
                    self.event = event
                    return self._stop()
                done = self.until(event)
                if done is not GO_ON:
                    self.done = done
                    return self._stop()
        except Exception as exc:  # (an SMTPError from next_event, or a bug: the task raises it)
            self.error = exc
            return self._stop()

    def _stop(self) -> bool:
        # (a reply that came restarts the deadline before the task wakes, as the task's own read does)
        self.deadline.replies_read(replies_read(self.session))
        self.link.pilot = None
        self.link.wake()
        return True
