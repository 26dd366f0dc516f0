"""The asyncio driver: streams, the engine, and a deadline per reply."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable, Iterable
from email.message import Message
from types import TracebackType
from typing import Any

from ._driver import (
    Collector,
    DriverBase,
    SendItem,
    command_reply,
    single_result,
    wait_closed,
    wait_command,
    wait_ready,
)
from .errors import LocalProtocolError, SMTPConnectError, SMTPError, SMTPTimeout, TLSError
from .events import NEED_DATA, Event, StartTLS
from .replies import Reply
from .results import SendResult

_RECV_SIZE = 65536


class AsyncSMTPClient(DriverBase):
    """asyncio SMTP/LMTP client.  ``async with AsyncSMTPClient(host) as smtp: await smtp.send_message(msg)``.

    Cancelling a call closes the connection: a transaction is never left
    half-way for reuse.
    """

    _reader: asyncio.StreamReader | None = None
    _writer: asyncio.StreamWriter | None = None

    async def connect(self) -> AsyncSMTPClient:
        if self._writer is not None:
            raise LocalProtocolError("already connected")
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout):
                self._reader, self._writer = await asyncio.open_connection(
                    self.host, self.port,
                    ssl=self._context() if self.tls else None,
                    server_hostname=self.server_hostname if self.tls else None,
                )
        except TimeoutError as exc:
            raise SMTPTimeout(f"connecting to {self.host}:{self.port} timed out") from exc
        except (ssl.SSLError, ssl.CertificateError) as exc:
            raise TLSError(f"TLS handshake with {self.server_hostname} failed: {exc}") from exc
        except OSError as exc:
            raise SMTPConnectError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        del loop
        sock = self._writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._peer_facts(self._writer.get_extra_info("sockname"), self._writer.get_extra_info("peername"))
        try:
            self.ready = await self._pump(wait_ready)  # type: ignore[assignment]
        except BaseException:
            self.close()
            raise
        return self

    async def __aenter__(self) -> AsyncSMTPClient:
        return await self.connect()

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        try:
            if (self._writer is not None and not self.session.is_closed and not self.session.buffered
                    and not isinstance(exc, asyncio.CancelledError)):
                await self.quit()
        except SMTPError:
            pass
        finally:
            self.close()

    # -- the API -----------------------------------------------------------------

    async def sendmail(self, from_addr: str, to_addrs: str | Iterable[str], msg: bytes | str | Message,
                       **options: Any) -> SendResult:
        ticket = self.session.sendmail(from_addr, to_addrs, msg, **options)
        return single_result((await self._results([ticket]))[0])

    async def send_message(self, msg: Message, from_addr: str | None = None,
                           to_addrs: str | Iterable[str] | None = None, **options: Any) -> SendResult:
        ticket = self.session.send_message(msg, from_addr, to_addrs, **options)
        return single_result((await self._results([ticket]))[0])

    async def send_many(self, items: Iterable[SendItem]) -> list[SendResult]:
        """As ``SMTPClient.send_many``: one result per message, pipelined when the server allows."""
        return await self._results(self.session.send_many(items))

    async def noop(self) -> Reply:
        return command_reply(await self._pump(wait_command(self.session.noop())))

    async def rset(self) -> Reply:
        return command_reply(await self._pump(wait_command(self.session.rset())))

    async def quit(self) -> Reply | None:
        self.session.quit()
        try:
            closed = await self._pump(wait_closed)
        finally:
            self.close()
        return getattr(closed, "reply", None)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = self._reader = None
        self.session.close()

    # -- moving bytes --------------------------------------------------------------

    async def _results(self, tickets: list[int]) -> list[SendResult]:
        collector = Collector(tickets)
        if tickets:
            try:
                await self._pump(collector.take)
            except SMTPError as exc:
                raise collector.interrupted(exc, tickets) from None
        return collector.ordered(tickets)

    async def _pump(self, until: Callable[[Event], bool]) -> Event:
        if self._writer is None or self._reader is None:
            raise LocalProtocolError("not connected")
        try:
            return await self._pump_events(until)
        except asyncio.CancelledError:
            self.close()  # never leave a transaction half-way for reuse
            raise

    async def _pump_events(self, until: Callable[[Event], bool]) -> Event:
        session = self.session
        loop = asyncio.get_running_loop()
        seen = session.replies_received
        try:
            # One timer for the whole call, moved on whenever a complete reply arrives: a
            # timeout context per read cost 14 µs a message.
            async with asyncio.timeout(self.timeout) as deadline:
                while True:
                    out = session.data_to_send()
                    if out:
                        await self._write(out)
                    try:
                        event = session.next_event()
                    except SMTPError:
                        await self._flush_and_close()
                        raise
                    if event is NEED_DATA:
                        if session.replies_received != seen:
                            seen = session.replies_received
                            deadline.reschedule(loop.time() + self.timeout)
                        session.receive_data(await self._read())
                        continue
                    if isinstance(event, StartTLS):
                        await self._handshake()
                        deadline.reschedule(loop.time() + self.timeout)
                        session.tls_established()
                        continue
                    if until(event):
                        return event
        except SMTPTimeout:
            raise
        except TimeoutError as exc:
            self.close()
            raise SMTPTimeout(f"no complete reply within {self.timeout} s (in state {session.state!r})") from exc

    async def _write(self, data: bytes) -> None:
        assert self._writer is not None
        try:
            self._writer.write(data)
            if self._writer.transport.get_write_buffer_size() > 1 << 16:
                await self._writer.drain()
        except OSError as exc:
            self.close()
            raise SMTPConnectError(f"writing to {self.host}:{self.port} failed: {exc}") from exc

    async def _read(self) -> bytes:
        assert self._reader is not None
        try:
            return await self._reader.read(_RECV_SIZE)
        except ssl.SSLError as exc:
            self.close()
            raise TLSError(f"TLS error while reading: {exc}") from exc
        except OSError:
            return b""  # a reset counts as the server closing; the engine decides if that is an error

    async def _handshake(self) -> None:
        assert self._writer is not None
        try:
            async with asyncio.timeout(self.timeout):
                await self._writer.start_tls(self._context(), server_hostname=self.server_hostname)
        except TimeoutError as exc:
            self.close()
            raise SMTPTimeout(f"TLS handshake with {self.host}:{self.port} timed out") from exc
        except (ssl.SSLError, ssl.CertificateError) as exc:
            self.close()
            raise TLSError(f"TLS handshake with {self.server_hostname} failed: {exc}") from exc
        except OSError as exc:
            self.close()
            raise SMTPConnectError(f"TLS handshake with {self.host}:{self.port} failed: {exc}") from exc

    async def _flush_and_close(self) -> None:
        out = self.session.data_to_send()
        if out and self._writer is not None:
            try:
                self._writer.write(out)
                async with asyncio.timeout(1.0):
                    await self._writer.drain()
            except (OSError, TimeoutError):
                pass
        self.close()
