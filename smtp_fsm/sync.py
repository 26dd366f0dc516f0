"""The blocking driver: a socket, the engine, and a deadline per reply.

The API is ``DriverBase``'s; this module keeps only what blocking I/O changes:
connecting, the read/write pump, the TLS handshake and closing.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Sequence

from ._driver import GO_ON, Batch, DriverBase, Until, Waited, install_api, single_result
from ._sync_io import SocketLink
from .errors import SMTPError
from .events import NEED_DATA, StartTLS
from .replies import Reply
from .results import SendResult
from .session import replies_read


class SMTPClient(DriverBase[SendResult, list[SendResult], Reply, Reply | None]):
    """Blocking SMTP/LMTP client.  ``with SMTPClient(host) as smtp: smtp.send_message(msg)``."""

    _link: SocketLink | None = None

    def connect(self) -> SMTPClient:
        """Connect, read the greeting, negotiate EHLO/STARTTLS/AUTH; returns self."""
        self._require_no_connection()
        deadline = time.monotonic() + self.timeout
        try:
            self._link = SocketLink.open(self.host, self.port, self.timeout, self.family, self.source_address)
        except OSError as exc:
            raise self._connect_failed(exc) from exc
        try:
            self._peer_facts(*self._link.peer())
            if self.tls:
                self._handshake(deadline)
            self.ready = self._pump(self._opened)
        except BaseException:
            self.close()
            raise
        return self

    def __enter__(self) -> SMTPClient:
        return self.connect()

    def __exit__(self, *exc_info: object) -> None:
        try:
            if self._owes_quit():
                self.quit()
        except SMTPError:
            pass  # the with block's own exception, if any, is what the caller needs to see
        finally:
            self.close()

    def _send_one(self, batch: Batch) -> SendResult:
        return single_result(self._send_many(batch)[0])

    def _send_many(self, batch: Batch) -> list[SendResult]:
        self._before_work(batch.items)
        collector = self._start(batch)
        if collector.tickets:
            try:
                self._pump(collector.take)
            except SMTPError as exc:
                raise collector.interrupted(exc) from None
        return collector.ordered()

    def _command(self, verb: str) -> Reply:
        self._before_work([])
        ticket = self.session.noop() if verb == "noop" else self.session.rset()
        return self._pump(self._answered(ticket))

    def _quit(self) -> Reply | None:
        self._begin_quit()
        try:
            return self._pump(self._ended)
        finally:
            self.close()

    def _before_work(self, items: Sequence[object]) -> None:
        """No transaction starts on a dead connection: take in what the idle server sent."""
        self._require_connection()
        assert self._link is not None
        self._link.absorb(self.session)
        self._refuse_on_ended_session(items)

    def _pump(self, until: Until[Waited]) -> Waited:
        link = self._link
        assert link is not None  # every caller required the connection first
        session = self.session
        seen = replies_read(session)
        progress = time.monotonic()
        while True:
            out = session.data_to_send()
            if out:
                try:
                    link.write(out, session)
                except TimeoutError as exc:
                    raise self._abandon(self._write_timed_out()) from exc
                # The reply's deadline counts from the end of the write (RFC 5321 §4.5.3.2: the
                # timeouts run while awaiting a reply); the write itself is bounded by progress.
                progress = time.monotonic()
            try:
                event = session.next_event()
            except SMTPError:
                self._flush_and_close()
                raise
            if event is NEED_DATA:
                try:
                    session.receive_data(link.read(progress + self._reply_timeout()))
                except TimeoutError:
                    raise self._abandon(self._reply_timed_out()) from None
                except ssl.SSLError as exc:
                    raise self._abandon(self._read_failed(exc)) from exc
                if replies_read(session) != seen:
                    # A complete reply: the next one gets a whole timeout.
                    seen = replies_read(session)
                    progress = time.monotonic()
                    link.full_timeout()
            elif isinstance(event, StartTLS):
                self._handshake(time.monotonic() + self.timeout)
                session.tls_established()
                progress = time.monotonic()
            elif (done := until(event)) is not GO_ON:
                return done

    def _handshake(self, deadline: float) -> None:
        assert self._link is not None
        try:
            self._link.handshake(self._context(), self.server_hostname, deadline)
        except OSError as exc:  # a timeout, a certificate refused, the server cutting the handshake
            raise self._handshake_failed(exc) from exc
        self.encrypted = True


install_api(SMTPClient, awaited=False)
