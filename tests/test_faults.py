"""The nine faults found by injecting failures and probing the engine, each pinned by a test.

1. a pre-answered end of data must not make the client write (and the server store) the content;
2./3. a reset right after the accept is ServerDisconnected in state 'greeting', in both drivers;
4. a server that leaves while the client idles is reported with its 421, never as a write error;
5. (addresses: tests/test_addresses.py);
6. a 250 that accepted a message is not lost to bad bytes after it in the same read;
7. a failed session hands out no bytes, however the bad stream was split;
8. the reply-line limit does not depend on where TCP splits the CRLF;
9. the AUTH line keeps RFC 4954's 512-octet rule, and unknown codes are acted on by their first digit.

Plus what the faults issue asks beside them: the four outcomes, ``data_timeout`` for the final reply,
and the drivers agreeing on every way a connection can fail (with the CLI's exit codes).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from drivers import DRIVERS, make_client
from sansio_helpers import GREETING, ehlo, ready, stepper

import smtp_fsm
from smtp_fsm import (
    ClientSession,
    MessageSent,
    Outcome,
    RemoteProtocolError,
    ServerDisconnected,
    SMTPConnectError,
    SMTPError,
    SMTPTimeout,
    TLSError,
    cli,
)
from smtp_fsm.replies import MAX_LINE
from smtp_fsm.session import session_error
from smtp_fsm.testing import LocalSMTPServer

both = pytest.mark.parametrize("kind", list(DRIVERS))
TIMEOUT = 5.0  # no test here waits for it unless it is about timeouts
MESSAGE = b"Subject: fault\r\n\r\nbody\r\n"
ITEM = ("a@example.test", ["b@example.test"], MESSAGE)


# -- a one-connection raw server ------------------------------------------------------------------------


class RawServer:
    """One connection on 127.0.0.1, handled by ``handler(conn)`` in a thread; records what it stored."""

    def __init__(self, handler: Callable[[RawServer, socket.socket], None], *, accept: bool = True) -> None:
        self.handler = handler
        self.stored: list[bytes] = []
        self.errors: list[BaseException] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(TIMEOUT * 2)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.buffer = b""

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(TIMEOUT * 2)
            try:
                self.handler(self, conn)
            except OSError:
                pass  # the client left first: what it saw is what the test checks
            except BaseException as exc:  # a harness bug must fail the test, not vanish in the thread
                self.errors.append(exc)

    def line(self, conn: socket.socket) -> bytes:
        """The next CRLF-terminated line from the client (bounded)."""
        for _ in range(1000):
            if b"\r\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\r\n", 1)
                return line
            data = conn.recv(65536)
            if not data:
                raise ConnectionResetError("client closed")
            self.buffer += data
        raise AssertionError("no line from the client")

    def content(self, conn: socket.socket) -> bytes:
        """Read a DATA body up to its terminating dot line and store it."""
        lines = []
        for _ in range(10_000):
            line = self.line(conn)
            if line == b".":
                body = b"\r\n".join(lines)
                self.stored.append(body)
                return body
            lines.append(line)
        raise AssertionError("no end of data")

    def __enter__(self) -> RawServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.listener.close()
        self.thread.join(TIMEOUT * 3)
        assert not self.errors, self.errors


def reset(conn: socket.socket) -> None:
    """Close with an RST instead of a FIN (SO_LINGER on, zero seconds)."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def greet(server: RawServer, conn: socket.socket, *keywords: str) -> None:
    conn.sendall(b"220 mx.example ESMTP\r\n")
    server.line(conn)  # EHLO
    conn.sendall(ehlo(*keywords))


def read_group(server: RawServer, conn: socket.socket) -> None:
    """The pipelined MAIL, RCPT, DATA of a one-recipient message."""
    for expected in (b"MAIL", b"RCPT", b"DATA"):
        assert server.line(conn).startswith(expected)


def serve_one_message(server: RawServer, conn: socket.socket) -> None:
    read_group(server, conn)
    conn.sendall(b"250 ok\r\n250 ok\r\n354 go\r\n")
    server.content(conn)
    conn.sendall(b"250 2.0.0 queued as Q1\r\n")


# -- fault 1: a pre-answered end of data -----------------------------------------------------------------


def pre_answering(server: RawServer, conn: socket.socket) -> None:
    greet(server, conn, "PIPELINING")
    read_group(server, conn)
    # The final 250 arrives before the content was sent: the client must not send it now.
    conn.sendall(b"250 ok\r\n250 ok\r\n354 go\r\n250 2.0.0 queued\r\n")
    with contextlib.suppress(OSError, ConnectionResetError, AssertionError):
        server.content(conn)  # records the message if the client writes it anyway


@both
def test_a_pre_answered_end_of_data_writes_no_content(kind: str) -> None:
    with RawServer(pre_answering) as server:
        client = make_client(kind, "127.0.0.1", server.port, timeout=TIMEOUT)
        with pytest.raises(RemoteProtocolError, match="unsolicited") as info, client:
            client.send_many([ITEM])
    assert server.stored == []  # the server stored nothing, so resending is safe...
    assert info.value.unsent == (ITEM,) and info.value.uncertain == () and info.value.completed == ()  # ...and said


def test_a_pre_answered_end_of_data_in_the_engine() -> None:
    h = ready("PIPELINING")
    ticket = h.session.sendmail("a@x.org", ["b@y.org"], b"hi\r\n")
    h.pending()
    step = h.feed(b"250 ok\r\n250 ok\r\n354 go\r\n250 2.0.0 queued\r\n")
    assert isinstance(step.error, RemoteProtocolError) and step.sent == b""
    assert [(e.ticket, e.result.outcome) for e in step.of(MessageSent)] == [(ticket, Outcome.NOT_SENT)]


# -- faults 2 and 3: a reset right after the accept ------------------------------------------------------


def reset_at_once(server: RawServer, conn: socket.socket) -> None:
    reset(conn)


@both
def test_a_reset_right_after_the_accept_is_server_disconnected_in_greeting(kind: str) -> None:
    # The reset races the client's getpeername (blocking) or the transport's peer name
    # (asyncio); repeated so that both orders happen.  Only the documented error may escape.
    for _ in range(15):
        with RawServer(reset_at_once) as server:
            client = make_client(kind, "127.0.0.1", server.port, timeout=TIMEOUT)
            with pytest.raises(ServerDisconnected) as info, client:
                pass
        assert info.value.state == "greeting" and info.value.reply is None


def test_peer_facts_unknown_after_a_reset_leave_the_session_usable() -> None:
    # asyncio reports a peer name of None when the reset came first; the driver must not index it.
    client = smtp_fsm.SMTPClient("127.0.0.1", 2525, username="u", password="p")
    client._peer_facts(None, None)
    session = client.session
    session.receive_data(b"220 mx\r\n")
    assert session.data_to_send() == b"EHLO [127.0.0.1]\r\n"  # the default name
    session.receive_data(b"250-mx\r\n250 AUTH PLAIN\r\n")
    # not known to be loopback: credentials are not sent in clear
    assert session.data_to_send() == b"QUIT\r\n" and isinstance(session_error(session), smtp_fsm.LocalProtocolError)


# -- fault 4: the server leaves while the client idles ---------------------------------------------------


def leaves_while_idle(how: str) -> Callable[[RawServer, socket.socket], None]:
    def handler(server: RawServer, conn: socket.socket) -> None:
        greet(server, conn, "PIPELINING")
        serve_one_message(server, conn)
        if how == "421":
            conn.sendall(b"421 4.4.2 idle timeout\r\n")
            conn.shutdown(socket.SHUT_WR)
        elif how == "reset":
            reset(conn)
            return
        else:
            conn.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError, AssertionError, ConnectionResetError):
            serve_one_message(server, conn)  # must not happen: the client may not start a transaction

    return handler


@both
@pytest.mark.parametrize("how", ["421", "close", "reset"])
def test_a_server_that_left_while_idle_is_reported_before_any_write(kind: str, how: str) -> None:
    with RawServer(leaves_while_idle(how)) as server:
        client = make_client(kind, "127.0.0.1", server.port, timeout=TIMEOUT)
        with pytest.raises(ServerDisconnected) as info, client:
            client.sendmail(*ITEM)
            time.sleep(0.3)  # the application idles; the server leaves meanwhile
            if kind == "async":
                client._loop.run_until_complete(asyncio.sleep(0.05))  # let the loop see it, as a real app would
            client.sendmail("a@example.test", ["c@example.test"], b"Subject: second\r\n\r\nx\r\n")
    error = info.value
    if how == "421":
        assert error.reply is not None and error.reply.code == 421 and "idle timeout" in str(error)
    else:
        assert error.reply is None
    assert error.state == "ready"
    assert error.unsent == (("a@example.test", ["c@example.test"], b"Subject: second\r\n\r\nx\r\n"),)
    assert len(server.stored) == 1


def cut_during_starttls(server: RawServer, conn: socket.socket) -> None:
    greet(server, conn, "STARTTLS")
    assert server.line(conn) == b"STARTTLS"
    conn.sendall(b"220 go ahead\r\n")
    conn.recv(100)  # the start of the ClientHello
    conn.shutdown(socket.SHUT_RDWR)


@both
def test_a_starttls_handshake_cut_by_the_server_is_a_tls_error(kind: str, tls_certificates: Any) -> None:
    with RawServer(cut_during_starttls) as server:
        client = make_client(kind, "127.0.0.1", server.port, timeout=TIMEOUT,
                             tls_context=tls_certificates.client_context, starttls="required")
        with pytest.raises(TLSError, match="handshake"), client:
            pass


# -- faults 6, 7, 8: feeding --------------------------------------------------------------------------


def test_a_250_before_garbage_in_the_same_read_is_delivered() -> None:
    h = ready("PIPELINING")
    ticket = h.session.sendmail("a@x.org", ["b@y.org"], b"hi\r\n")
    h.pending()
    assert h.feed(b"250 ok\r\n250 ok\r\n354 go\r\n").sent == b"hi\r\n.\r\n"
    step = h.feed(b"250 2.0.0 queued as X\r\nGARBAGE\r\n")
    [sent] = step.of(MessageSent)
    assert sent.ticket == ticket and sent.result.outcome is Outcome.DELIVERED and sent.result.ok
    assert sent.result.reply is not None and sent.result.reply.text == "2.0.0 queued as X"
    assert isinstance(step.error, RemoteProtocolError) and "malformed" in str(step.error)


@pytest.mark.parametrize("stream", [b"220 mx\r\n250 x\r\n", b"220 mx\r\nHELLO\r\n"])
def test_a_failed_session_hands_out_no_bytes_however_the_stream_is_split(stream: bytes) -> None:
    outputs = []
    for pieces in ([stream], [stream[i : i + 1] for i in range(len(stream))]):
        session = ClientSession(local_hostname="client.example")
        for piece in pieces:
            session.receive_data(piece)
        outputs.append((session.state, session.data_to_send()))
        with pytest.raises(RemoteProtocolError):
            session.next_event()
    assert outputs == [("failed", b""), ("failed", b"")]


def test_the_greeting_line_limit_does_not_depend_on_where_the_crlf_is_split() -> None:
    line = b"220 " + b"x" * (MAX_LINE - 4)
    for pieces in ([line + b"\r\n"], [line + b"\r", b"\n"], [line, b"\r", b"\n"]):
        h = stepper()
        for piece in pieces:
            step = h.feed(piece)
        assert step.state == "ehlo" and step.errors == (), pieces


# -- fault 9: the AUTH line, and unknown reply codes --------------------------------------------------------


def test_an_initial_response_too_long_for_the_auth_line_waits_for_the_334() -> None:
    user, password = "u" * 200, "p" * 200
    h = stepper(username=user, password=password, loopback=True, auth_mechanism="PLAIN")
    h.feed(GREETING)
    step = h.feed(ehlo("AUTH PLAIN"))
    # RFC 4954 §4: the AUTH command keeps the 512-octet line limit; without room, no initial response.
    assert step.sent == b"AUTH PLAIN\r\n" and step.state == "auth"
    step = h.feed(b"334 \r\n")
    assert base64.b64decode(step.sent.rstrip(b"\r\n")) == f"\0{user}\0{password}".encode()
    assert len(step.sent) <= 12288
    assert h.feed(b"235 2.7.0 ok\r\n").state == "ready"


def test_a_short_initial_response_still_rides_on_the_auth_line() -> None:
    h = stepper(username="u", password="p", loopback=True, auth_mechanism="PLAIN")
    h.feed(GREETING)
    assert h.feed(ehlo("AUTH PLAIN")).sent == b"AUTH PLAIN " + base64.b64encode(b"\0u\0p") + b"\r\n"


def test_long_credentials_authenticate_against_aiosmtpd() -> None:
    user, password = "u" * 200, "p" * 200
    with LocalSMTPServer(credentials={user: password}, auth_require_tls=False) as server:
        with smtp_fsm.SMTPClient(server.host, server.port, username=user, password=password,
                                 auth_mechanism="PLAIN", timeout=TIMEOUT, trace=True) as client:
            client.sendmail(*ITEM)
            lines = b"".join(step.sent for step in client.trace).split(b"\r\n")
    assert max(len(line) + 2 for line in lines if line.startswith(b"AUTH")) <= 512
    assert len(server.messages) == 1


def test_an_unknown_code_is_acted_on_by_its_first_digit() -> None:
    # RFC 5321 §4.2: 571 is not in the grammar's second-digit range; it is still a 5xx refusal.
    h = ready("PIPELINING")
    ticket = h.session.sendmail("a@x.org", ["b@y.org", "c@y.org"], b"hi\r\n")
    h.pending()
    step = h.feed(b"250 ok\r\n571 5.7.1 delivery not authorized\r\n250 ok\r\n354 go\r\n")
    assert step.errors == () and step.state == "content"
    result = h.feed(b"250 2.0.0 queued\r\n").results[ticket]
    assert result.outcome is Outcome.DELIVERED and result.refused["b@y.org"].code == 571


# -- the outcome of every message ---------------------------------------------------------------------------


def test_outcomes_in_the_engine_across_a_pipelined_batch_cut_by_421() -> None:
    h = ready("PIPELINING")
    tickets = []
    for n in range(4):
        tickets.append(h.session.sendmail("a@x.org", [f"r{n}@y.org"], b"hi\r\n"))
        h.pending()
    refused_one = h.feed(b"550 no\r\n250 ok\r\n554 no valid recipients\r\n")  # message 1: sender refused
    assert refused_one.sent == b"RSET\r\n"
    after_rset = h.feed(b"250 reset\r\n")
    assert after_rset.sent.startswith(b"MAIL FROM")  # message 2's group
    step = h.feed(b"250 ok\r\n250 ok\r\n354 go\r\n")  # message 2: its content goes out
    assert step.sent.startswith(b"hi\r\n.\r\n")
    step = h.feed(b"250 queued\r\n250 ok\r\n250 ok\r\n354 go\r\n")  # message 2 delivered, 3's content out
    step2 = h.feed(b"421 4.3.2 going down\r\n")
    fates = {event.ticket: event.result.outcome for s in (after_rset, step, step2) for event in s.of(MessageSent)}
    assert fates == {tickets[0]: "refused", tickets[1]: "delivered", tickets[2]: "uncertain",
                     tickets[3]: "not_sent"}
    assert isinstance(step2.error, ServerDisconnected) and step2.sent == b""


def test_closing_the_engine_settles_every_unfinished_message() -> None:
    h = ready("PIPELINING")
    first = h.session.sendmail("a@x.org", ["b@y.org"], b"hi\r\n")
    h.pending()
    second = h.session.sendmail("a@x.org", ["c@y.org"], b"hi\r\n")
    h.pending()
    h.feed(b"250 ok\r\n250 ok\r\n354 go\r\n")  # the first message's content is handed out
    reason = SMTPTimeout("no final reply")
    h.session.close(reason)
    events = [h.session.next_event() for _ in range(2)]
    assert [(e.ticket, e.result.outcome, e.result.error) for e in events] == [
        (first, "uncertain", reason), (second, "not_sent", reason)]


def test_results_have_an_outcome_when_all_goes_well(smtp_server: LocalSMTPServer) -> None:
    with smtp_fsm.SMTPClient(smtp_server.host, smtp_server.port, timeout=TIMEOUT) as client:
        results = client.send_many([ITEM, ("a@example.test", ["bad@"], MESSAGE)][:1])
    assert [r.outcome for r in results] == [Outcome.DELIVERED]


# -- data_timeout: the final reply waits longer ---------------------------------------------------------


def slow_final_reply(delay: float) -> Callable[[RawServer, socket.socket], None]:
    def handler(server: RawServer, conn: socket.socket) -> None:
        greet(server, conn, "PIPELINING")
        read_group(server, conn)
        conn.sendall(b"250 ok\r\n250 ok\r\n354 go\r\n")
        server.content(conn)
        time.sleep(delay)  # the stored message's final reply is slow (a content scanner, say)
        with contextlib.suppress(OSError):
            conn.sendall(b"250 2.0.0 queued as SLOW\r\n")
            server.line(conn)  # QUIT
            conn.sendall(b"221 bye\r\n")

    return handler


@both
def test_the_final_reply_gets_data_timeout_not_timeout(kind: str) -> None:
    with RawServer(slow_final_reply(1.0)) as server:
        with make_client(kind, "127.0.0.1", server.port, timeout=0.4, data_timeout=5) as client:
            result = client.sendmail(*ITEM)
    assert result.outcome is Outcome.DELIVERED and result.reply is not None and result.reply.text.endswith("SLOW")


@both
def test_a_final_reply_later_than_data_timeout_leaves_the_message_uncertain(kind: str) -> None:
    with RawServer(slow_final_reply(1.5)) as server:
        client = make_client(kind, "127.0.0.1", server.port, timeout=5, data_timeout=0.3)
        started = time.monotonic()
        with pytest.raises(SMTPTimeout, match=r"no reply to the end of data within 0\.3 s") as info, client:
            client.sendmail(*ITEM)
        assert time.monotonic() - started < 3
    assert info.value.uncertain == (ITEM,) and info.value.unsent == ()
    assert len(server.stored) == 1  # which is why it is uncertain, not unsent


@pytest.mark.parametrize("value", [0, -1, None, "10", True])
def test_data_timeout_is_validated(value: Any) -> None:
    for driver in (smtp_fsm.SMTPClient, smtp_fsm.AsyncSMTPClient):
        with pytest.raises(smtp_fsm.LocalProtocolError, match="data_timeout"):
            driver("127.0.0.1", data_timeout=value)


# -- the drivers agree: every way a connection fails, and its exit code ---------------------------------


@contextlib.contextmanager
def full_backlog() -> Iterator[int]:
    """A port whose accept queue is full: a connect there is never answered (no SYN-ACK)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):  # bounded: Linux queues backlog + 1 connections, then drops SYNs
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def closes_before_greeting(how: str) -> Callable[[RawServer, socket.socket], None]:
    def handler(server: RawServer, conn: socket.socket) -> None:
        if how == "reset":
            reset(conn)
        else:
            conn.shutdown(socket.SHUT_RDWR)

    return handler


def plain_greeting(server: RawServer, conn: socket.socket) -> None:
    conn.sendall(b"220 not TLS at all\r\n")  # an implicit-TLS client gets this as its ServerHello
    with contextlib.suppress(OSError):
        conn.recv(1000)


def mid_batch_421(server: RawServer, conn: socket.socket) -> None:
    greet(server, conn, "PIPELINING")
    serve_one_message(server, conn)
    server.line(conn)  # the second message's MAIL
    conn.sendall(b"421 4.3.2 shutting down\r\n")


def reset_after_data(server: RawServer, conn: socket.socket) -> None:
    greet(server, conn, "PIPELINING")
    read_group(server, conn)
    conn.sendall(b"250 ok\r\n250 ok\r\n354 go\r\n")
    server.content(conn)
    reset(conn)


def silent(server: RawServer, conn: socket.socket) -> None:
    conn.recv(100)  # never greets; returns when the client gives up


Case = tuple[str, Callable[[RawServer, socket.socket], None] | None, dict[str, Any], type[SMTPError], int]
CASES: list[Case] = [
    ("connect refused", None, {}, SMTPConnectError, cli.EXIT_CONNECT),
    ("reset before the greeting", closes_before_greeting("reset"), {}, ServerDisconnected, cli.EXIT_CONNECT),
    ("close before the greeting", closes_before_greeting("close"), {}, ServerDisconnected, cli.EXIT_CONNECT),
    ("TLS handshake failure", plain_greeting, {"tls": True}, TLSError, cli.EXIT_CONNECT),
    ("421 mid-batch", mid_batch_421, {}, ServerDisconnected, cli.EXIT_PROTOCOL),
    ("reset after the data", reset_after_data, {}, ServerDisconnected, cli.EXIT_PROTOCOL),
    ("reply timeout", silent, {"timeout": 0.3}, SMTPTimeout, cli.EXIT_PROTOCOL),
]


@both
@pytest.mark.parametrize(("name", "handler", "options", "error", "exit_code"), CASES, ids=[c[0] for c in CASES])
def test_the_drivers_agree_on_each_failure(kind: str, name: str, handler: Any, options: dict[str, Any],
                                           error: type[SMTPError], exit_code: int) -> None:
    items = [ITEM, ("a@example.test", ["c@example.test"], b"Subject: 2\r\n\r\nx\r\n")]
    if handler is None:
        port = socket.create_server(("127.0.0.1", 0)).getsockname()[1]  # closed at once: nothing listens
        server_cm: Any = contextlib.nullcontext()
    else:
        server_cm = RawServer(handler)
        port = server_cm.port
    with server_cm:
        client = make_client(kind, "127.0.0.1", port, **{"timeout": TIMEOUT, **options})
        with pytest.raises(SMTPError) as info:
            with client:
                client.send_many(items)
    assert type(info.value) is error, repr(info.value)
    opening = info.value.state in (None, "greeting") if hasattr(info.value, "state") else True
    assert cli.exit_code_for(info.value, opening) == exit_code
    if name == "421 mid-batch":
        assert info.value.reply is not None and info.value.reply.code == 421
        assert [r.outcome for r in info.value.completed] == ["delivered"] and info.value.unsent == (items[1],)
    if name == "reset after the data":
        assert info.value.uncertain == (items[0],) and info.value.unsent == (items[1],)
    if name.endswith("before the greeting"):
        assert info.value.state == "greeting"


@both
def test_a_connect_timeout_is_a_connect_error(kind: str) -> None:
    with full_backlog() as port:
        client = make_client(kind, "127.0.0.1", port, timeout=0.5)
        started = time.monotonic()
        with pytest.raises(SMTPConnectError, match="timed out"), client:
            pass
        assert time.monotonic() - started < 5
    assert cli.exit_code_for(SMTPConnectError("x"), True) == cli.EXIT_CONNECT


def test_a_tls_error_chains_the_ssl_error() -> None:
    with RawServer(plain_greeting) as server:
        with pytest.raises(TLSError) as info, smtp_fsm.SMTPClient("127.0.0.1", server.port, tls=True,
                                                                   timeout=TIMEOUT):
            pass
    assert isinstance(info.value.__cause__, ssl.SSLError | OSError)


@pytest.mark.parametrize(("timeouts", "expected"), [(["--timeout", "0.4", "--data-timeout", "5"], cli.EXIT_OK),
                                                    (["--timeout", "5", "--data-timeout", "0.3"], cli.EXIT_PROTOCOL)])
def test_the_command_line_takes_a_data_timeout(timeouts: list[str], expected: int,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    with RawServer(slow_final_reply(1.0)) as server:
        code = cli.main(["send", "--server", f"127.0.0.1:{server.port}", "--from", "a@example.test",
                         "--to", "b@example.test", "--body", "hi", *timeouts])
    assert code == expected, capsys.readouterr().err
    assert len(server.stored) == 1


# -- found in review: outcomes already decided, partial deliveries, deadlines, the idle race -------------


def test_a_message_the_server_refused_stays_refused_when_the_session_ends_during_rset() -> None:
    # Every RCPT refused, then BDAT LAST answered 554: the server decided; its close during the RSET
    # changes nothing (not uncertain: no recipient was accepted).
    h = ready("PIPELINING", "CHUNKING")
    ticket = h.session.sendmail("a@x.org", ["b@y.org"], b"Subject: x\r\n\r\nhi\r\n")
    h.pending()
    assert h.feed(b"250 ok\r\n550 5.1.1 no such user\r\n554 5.5.1 no valid recipients\r\n").sent == b"RSET\r\n"
    result = h.feed(b"").results[ticket]
    assert result.outcome is Outcome.REFUSED and isinstance(result.error, smtp_fsm.RecipientsRefused)
    # The DATA path, a 421 during the RSET.
    h = ready("PIPELINING")
    ticket = h.session.sendmail("a@x.org", ["b@y.org"], b"Subject: x\r\n\r\nhi\r\n")
    h.pending()
    h.feed(b"250 ok\r\n550 5.1.1 no such user\r\n554 no valid recipients\r\n")
    result = h.feed(b"421 4.3.2 bye\r\n").results[ticket]
    assert result.outcome is Outcome.REFUSED and result.refused["b@y.org"].code == 550


def test_lmtp_delivery_to_some_recipients_then_the_end_is_delivered_with_the_rest_unfinished() -> None:
    h = ready("PIPELINING", lmtp=True)
    ticket = h.session.sendmail("a@x.org", ["b@y.org", "c@y.org"], b"Subject: x\r\n\r\nhi\r\n")
    h.pending()
    h.feed(b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n")
    h.feed(b"250 2.0.0 <b> delivered\r\n")
    step = h.feed(b"")
    result = step.results[ticket]
    assert result.outcome is Outcome.DELIVERED and result.delivery["b@y.org"].code == 250
    assert result.unfinished == {"c@y.org": Outcome.UNCERTAIN} and "c@y.org" not in result.accepted
    assert result.error is step.error  # the message was cut short: the error says so


@pytest.mark.parametrize(("round_two", "fate"), [(b"", Outcome.NOT_SENT), (b"250 ok\r\n250 ok\r\n354 go\r\n",
                                                                          Outcome.UNCERTAIN)])
def test_a_452_retry_round_cut_short_keeps_the_first_delivery(round_two: bytes, fate: Outcome) -> None:
    h = ready("PIPELINING")
    ticket = h.session.sendmail("a@x.org", ["b@y.org", "c@y.org"], b"Subject: x\r\n\r\nhi\r\n")
    h.pending()
    h.feed(b"250 ok\r\n250 ok\r\n452 4.5.3 too many recipients\r\n354 go\r\n")
    assert h.feed(b"250 queued Q1\r\n").sent.startswith(b"MAIL FROM")  # the retry round for c
    if round_two:
        assert h.feed(round_two).sent == b"Subject: x\r\n\r\nhi\r\n.\r\n"
    result = h.feed(b"421 4.3.2 bye\r\n").results[ticket]
    assert result.outcome is Outcome.DELIVERED and result.reply is not None and result.reply.text == "queued Q1"
    assert list(result.accepted) == ["b@y.org"] and result.unfinished == {"c@y.org": fate}


@both
def test_a_452_retry_cut_short_is_raised_with_the_partial_result(kind: str) -> None:
    def handler(server: RawServer, conn: socket.socket) -> None:
        greet(server, conn, "PIPELINING")
        for _ in range(4):
            server.line(conn)  # MAIL, RCPT b, RCPT c, DATA
        conn.sendall(b"250 ok\r\n250 ok\r\n452 4.5.3 too many recipients\r\n354 go\r\n")
        server.content(conn)
        conn.sendall(b"250 queued Q1\r\n")
        server.line(conn)  # the retry round's MAIL
        conn.sendall(b"421 4.3.2 shutting down\r\n")

    item = ("a@example.test", ["b@example.test", "c@example.test"], MESSAGE)
    with RawServer(handler) as server:
        client = make_client(kind, "127.0.0.1", server.port, timeout=TIMEOUT)
        with pytest.raises(ServerDisconnected) as info, client:
            client.sendmail(*item)
    [result] = info.value.completed
    assert result.outcome is Outcome.DELIVERED and result.unfinished == {"c@example.test": Outcome.NOT_SENT}
    assert info.value.unsent == () and info.value.uncertain == ()


def test_the_error_state_does_not_depend_on_where_the_read_was_split() -> None:
    def run(pieces: list[bytes]) -> tuple[str, str | None]:
        h = ready()
        h.session.send_many([("a@x.org", ["b@y.org"], b"one\r\n"), ("a@x.org", ["b@y.org"], b"two\r\n")])
        h.pending()
        for reply_ in (b"250 ok\r\n", b"250 ok\r\n", b"354 go\r\n"):
            h.feed(reply_)
        for piece in pieces:
            h.session.receive_data(piece)
        step = h.pending()
        return step.state, getattr(step.errors[0], "state", None)

    assert run([b"250 queued 1\r\n421 4.3.0 bye\r\n"]) == run([b"250 queued 1\r\n", b"421 4.3.0 bye\r\n"])


def final_then_silence(server: RawServer, conn: socket.socket) -> None:
    greet(server, conn, "PIPELINING")
    read_group(server, conn)
    conn.sendall(b"250 ok\r\n250 ok\r\n354 go\r\n")
    server.content(conn)
    time.sleep(0.6)  # a slow final reply: within data_timeout
    conn.sendall(b"250 queued 1\r\n")
    with contextlib.suppress(OSError):
        conn.recv(65536)  # the next message's MAIL is never answered
        time.sleep(TIMEOUT)


@both
def test_the_reply_after_a_slow_final_reply_gets_timeout_again(kind: str) -> None:
    with RawServer(final_then_silence) as server:
        client = make_client(kind, "127.0.0.1", server.port, timeout=0.4, data_timeout=3)
        started = time.monotonic()
        with pytest.raises(SMTPTimeout, match=r"no reply to MAIL FROM within 0\.4 s") as info, client:
            client.send_many([ITEM, ("a@example.test", ["c@example.test"], MESSAGE)])
        assert time.monotonic() - started < 2.0  # not 0.6 + data_timeout
    assert [r.outcome for r in info.value.completed] == ["delivered"]


def idle_421_while_the_app_is_busy(server: RawServer, conn: socket.socket) -> None:
    greet(server, conn, "PIPELINING")
    serve_one_message(server, conn)
    conn.sendall(b"421 4.3.2 shutting down\r\n")
    conn.shutdown(socket.SHUT_WR)
    with contextlib.suppress(OSError, AssertionError, ConnectionResetError):
        serve_one_message(server, conn)


def test_asyncio_reads_an_idle_421_the_loop_has_not_seen_yet() -> None:
    async def main(port: int) -> ServerDisconnected:
        async with smtp_fsm.AsyncSMTPClient("127.0.0.1", port, timeout=TIMEOUT) as client:
            await client.sendmail(*ITEM)
            time.sleep(0.3)  # blocking work: the 421 sits in the kernel, unread by the loop
            with pytest.raises(ServerDisconnected) as info:
                await client.sendmail(*ITEM)
            return info.value

    with RawServer(idle_421_while_the_app_is_busy) as server:
        error = asyncio.run(asyncio.wait_for(main(server.port), 30))
    assert error.reply is not None and error.reply.code == 421 and error.unsent == (ITEM,)
    assert len(server.stored) == 1


def slow_bdat_reader(server: RawServer, conn: socket.socket) -> None:
    greet(server, conn, "PIPELINING", "CHUNKING")
    assert server.line(conn).startswith(b"MAIL")
    assert server.line(conn).startswith(b"RCPT")
    conn.sendall(b"250 ok\r\n250 ok\r\n")
    content = b""
    for _ in range(100):  # bounded: the client's message has a handful of 1 MiB chunks
        head = server.line(conn).split()
        size = int(head[1])
        chunk, server.buffer = server.buffer[:size], server.buffer[size:]
        while len(chunk) < size:
            chunk += conn.recv(min(65536, size - len(chunk)))
            time.sleep(0.01)  # a slow link: about 6 MB/s
        content += chunk
        if len(head) > 2:  # BDAT n LAST
            break
        conn.sendall(b"250 2.0.0 chunk received\r\n")  # each chunk answered as soon as it is read
    server.stored.append(content)
    conn.sendall(b"250 2.0.0 queued\r\n")
    with contextlib.suppress(OSError):
        server.line(conn)
        conn.sendall(b"221 bye\r\n")


@both
def test_a_slow_but_steady_upload_is_not_cut_by_the_reply_timeout(kind: str) -> None:
    # Pipelined BDAT: the whole message goes in one write while the chunks' replies are awaited
    # with `timeout`; the deadline counts from the end of the write, whose own bound is progress.
    big = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 6000  # 6 MB: about a second on this link
    with RawServer(slow_bdat_reader) as server:
        with make_client(kind, "127.0.0.1", server.port, timeout=0.5, data_timeout=5) as client:
            result = client.sendmail("a@example.test", ["b@example.test"], big)
    assert result.outcome is Outcome.DELIVERED and server.stored == [big]


@both
def test_unsent_items_can_be_sent_again_even_when_recipients_were_an_iterator(kind: str) -> None:
    with RawServer(leaves_while_idle("421")) as server:
        client = make_client(kind, "127.0.0.1", server.port, timeout=TIMEOUT)
        with pytest.raises(ServerDisconnected) as info, client:
            client.sendmail(*ITEM)
            time.sleep(0.3)
            client.send_many([("a@example.test", iter(["c@example.test", "d@example.test"]), MESSAGE), ITEM])
    [first, second] = info.value.unsent
    assert list(first[1]) == ["c@example.test", "d@example.test"] and second is ITEM


# -- found in the second review -----------------------------------------------------------------------------


def test_a_refused_chunk_is_not_retried_as_a_452_round_even_when_bdat_last_got_250() -> None:
    h = ready("PIPELINING", "CHUNKING", chunk_size=4)
    ticket = h.session.sendmail("s@x.org", ["a@x.org", "b@x.org"], b"Subject: t\r\n\r\nhi\r\n")
    step = h.pending()
    chunks = step.sent.count(b"BDAT")
    # MAIL 250, RCPT a 250, RCPT b 452, the first chunk 554, the rest (LAST included) 250.
    step = h.feed(b"250 ok\r\n250 ok\r\n452 4.5.3 later\r\n554 5.6.0 chunk refused\r\n" + b"250 ok\r\n" * (chunks - 1))
    assert step.sent == b"RSET\r\n"  # not a retry round for b: the message failed
    result = h.feed(b"250 reset\r\n").results[ticket]
    assert result.outcome is Outcome.REFUSED and isinstance(result.error, smtp_fsm.DataRefused)


def test_asyncio_names_a_stalled_write_as_such() -> None:
    def stalls(server: RawServer, conn: socket.socket) -> None:
        greet(server, conn)
        for _ in range(3):
            server.line(conn)  # MAIL, RCPT, DATA (one by one: no PIPELINING)
            conn.sendall(b"354 go\r\n" if _ == 2 else b"250 ok\r\n")
        time.sleep(3)  # never reads the content: the client's write stalls

    big = b"Subject: x\r\n\r\n" + (b"z" * 998 + b"\r\n") * 30000  # 30 MB: more than the socket buffers

    async def main(port: int) -> SMTPTimeout:
        client = smtp_fsm.AsyncSMTPClient("127.0.0.1", port, timeout=0.5, data_timeout=30)
        await client.connect()
        try:
            with pytest.raises(SMTPTimeout) as info:
                await client.sendmail("a@example.test", ["b@example.test"], big)
        finally:
            client.close()
        return info.value

    with RawServer(stalls) as server:
        started = time.monotonic()
        error = asyncio.run(asyncio.wait_for(main(server.port), 30))
        assert time.monotonic() - started < 5  # timeout bounds the write's progress, not data_timeout
    assert "no progress within 0.5 s" in str(error) and error.uncertain == (("a@example.test", ["b@example.test"],
                                                                             big),)


def test_asyncio_a_cancel_in_the_same_turn_as_the_deadline_stays_a_cancel() -> None:
    def silent_after_ehlo(server: RawServer, conn: socket.socket) -> None:
        greet(server, conn)
        with contextlib.suppress(OSError, AssertionError, ConnectionResetError):
            server.line(conn)  # MAIL: never answered
            time.sleep(3)

    async def main(port: int) -> str:
        client = smtp_fsm.AsyncSMTPClient("127.0.0.1", port, timeout=0.5)
        await client.connect()
        loop = asyncio.get_running_loop()
        loop.call_later(0.3, time.sleep, 0.4)  # a busy loop: the deadline and the cancel fall in one turn
        task = asyncio.current_task()
        assert task is not None
        loop.call_later(0.45, task.cancel)
        try:
            await client.sendmail(*ITEM)
        except asyncio.CancelledError:
            task.uncancel()
            return "cancelled"
        except SMTPTimeout:
            return "timeout"
        return "sent"

    with RawServer(silent_after_ehlo) as server:
        assert asyncio.run(asyncio.wait_for(main(server.port), 30)) == "cancelled"


@both
def test_send_message_with_iterator_recipients_leaves_a_reusable_unsent_item(kind: str) -> None:
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@example.test", "x@example.test", "hi"
    msg.set_content("hi")
    with RawServer(leaves_while_idle("421")) as server:
        client = make_client(kind, "127.0.0.1", server.port, timeout=TIMEOUT)
        with pytest.raises(ServerDisconnected) as info, client:
            client.sendmail(*ITEM)
            time.sleep(0.3)
            client.send_message(msg, to_addrs=iter(["c@example.test"]))
    [(sender, recipients, again)] = info.value.unsent
    assert sender == "a@example.test" and list(recipients) == ["c@example.test"] and again is msg


def test_awaiting_names_the_reply_a_timeout_would_be_about() -> None:
    from smtp_fsm.session import END_OF_DATA

    h = stepper()
    seen = [h.session.awaiting]
    h.session.sendmail("a@x.org", ["b@y.org"], b"hi\r\n")
    for data in (GREETING, b"250 mx\r\n", b"250 ok\r\n", b"250 ok\r\n", b"354 go\r\n", b"250 queued\r\n"):
        h.feed(data)
        seen.append(h.session.awaiting)
    # Not pipelined (no PIPELINING offered): one command, one awaited reply at a time.
    assert seen == ["greeting", "EHLO", "MAIL FROM", "RCPT TO", "DATA", END_OF_DATA, None]


@both
def test_a_timeout_says_which_reply_did_not_come(kind: str) -> None:
    with RawServer(silent) as server:
        client = make_client(kind, "127.0.0.1", server.port, timeout=0.3)
        with pytest.raises(SMTPTimeout, match=r"no greeting within 0\.3 s"), client:
            pass
