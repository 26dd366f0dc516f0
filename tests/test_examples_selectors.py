"""examples/selectors_loop.py against real local servers: several messages on one connection, STARTTLS,
and per-reply deadlines (the long one for the end of the data) that end a silent session in bounded time."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import smtp_fsm
from smtp_fsm.testing import ScriptedSMTPServer, hostile
from smtp_fsm.testing.servers import LocalSMTPServer, RecordingHandler, make_test_tls

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "examples") not in sys.path:  # examples/ is not a package
    sys.path.insert(0, str(ROOT / "examples"))

import selectors_loop  # noqa: E402

BOUND = 30.0  # seconds: no test may take longer, whatever the example does


def batch(count: int, refused_at: int | None = None) -> list[selectors_loop.Item]:
    return [("a@example.org", ["nobody@example.net" if n == refused_at else f"user{n}@example.net"],
             f"Subject: message {n}\r\n\r\nbody {n}\r\n".encode()) for n in range(count)]


def test_several_messages_go_over_one_pipelined_connection_in_order() -> None:
    with LocalSMTPServer(pipelining=True) as server:
        results = selectors_loop.send_all(server.host, server.port, batch(4), timeout=BOUND, data_timeout=BOUND)
        commands = list(server.handler.commands)
        received = list(server.messages)
    assert [result.outcome for result in results] == [smtp_fsm.Outcome.DELIVERED] * 4
    assert [list(result.accepted) for result in results] == [[f"user{n}@example.net"] for n in range(4)]
    assert [result.reply and result.reply.code for result in results] == [250] * 4
    assert [(m.message["Subject"], m.rcpt_tos) for m in received] == [
        (f"message {n}", (f"user{n}@example.net",)) for n in range(4)]
    assert sum(command.startswith("EHLO ") for command in commands) == 1  # one connection, one session


def test_a_refused_message_does_not_stop_the_ones_after_it() -> None:
    handler = RecordingHandler(refuse={"nobody@example.net": "550 5.1.1 no such user"})
    with LocalSMTPServer(handler=handler, pipelining=True) as server:
        results = selectors_loop.send_all(server.host, server.port, batch(3, refused_at=1), timeout=BOUND,
                                          data_timeout=BOUND)
        subjects = [m.message["Subject"] for m in server.messages]
    assert [result.outcome for result in results] == [smtp_fsm.Outcome.DELIVERED, smtp_fsm.Outcome.REFUSED,
                                                      smtp_fsm.Outcome.DELIVERED]
    assert isinstance(results[1].error, smtp_fsm.RecipientsRefused)
    assert results[1].refused["nobody@example.net"].code == 550
    assert subjects == ["message 0", "message 2"]


def test_starttls_is_used_when_the_server_offers_it() -> None:
    tls = make_test_tls("127.0.0.1")
    with LocalSMTPServer(starttls_context=tls.server_context, require_starttls=True) as server:
        results = selectors_loop.send_all(server.host, server.port, batch(2), timeout=BOUND, data_timeout=BOUND,
                                          context=tls.client_context)
        received = list(server.messages)
    assert all(result.ok for result in results)
    assert [(m.message["Subject"], m.peer_tls) for m in received] == [("message 0", True), ("message 1", True)]


def test_a_failed_handshake_ends_with_tls_error_and_nothing_sent() -> None:
    tls = make_test_tls("127.0.0.1")
    with LocalSMTPServer(starttls_context=tls.server_context) as server:
        started = time.monotonic()
        results = selectors_loop.send_all(server.host, server.port, batch(2), timeout=BOUND, data_timeout=BOUND,
                                          context=ssl.create_default_context())  # does not trust the test CA
        assert time.monotonic() - started < BOUND
        assert server.messages == []
    assert [result.outcome for result in results] == [smtp_fsm.Outcome.NOT_SENT] * 2
    assert all(isinstance(result.error, smtp_fsm.TLSError) for result in results)
    error = results[0].error
    assert error is not None and isinstance(error.__cause__, ssl.SSLError)


@pytest.fixture
def silent_server() -> Iterator[tuple[str, int]]:
    """Accepts, says 220, then reads and never answers again."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(BOUND)
    stop = threading.Event()

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.sendall(b"220 mx.example ESMTP and then silence\r\n")
            conn.settimeout(0.05)
            for _ in range(int(BOUND / 0.05)):  # bounded: read and drop until the client leaves
                if stop.is_set():
                    return
                try:
                    if not conn.recv(4096):
                        return
                except TimeoutError:
                    continue
                except OSError:
                    return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[:2]
    stop.set()
    listener.close()
    thread.join(BOUND)


def test_a_silent_server_ends_in_smtp_timeout_at_the_per_reply_deadline(silent_server: tuple[str, int]) -> None:
    host, port = silent_server
    started = time.monotonic()
    results = selectors_loop.send_all(host, port, batch(2), timeout=0.3, data_timeout=0.3)
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 5.0
    assert [result.outcome for result in results] == [smtp_fsm.Outcome.NOT_SENT] * 2
    for result in results:
        assert isinstance(result.error, smtp_fsm.SMTPTimeout) and "EHLO" in str(result.error)


END_OF_DATA_SESSION = """
S: 220 mx.example ESMTP
C: EHLO [127.0.0.1]
S: 250-mx.example
S: 250 PIPELINING
C: MAIL FROM:<a@example.org>
C: RCPT TO:<user0@example.net>
C: DATA
S: 250 2.1.0 sender ok
S: 250 2.1.5 recipient ok
S: 354 go ahead
C: Subject: message 0
C:
C: body 0
C: .
S: 250 2.0.0 queued
C: QUIT
S: 221 bye
"""


def test_the_reply_to_the_end_of_data_gets_the_long_deadline() -> None:
    # Step 6 is the final reply: it never comes.  The short timeout would give up after 0.3 s.
    with ScriptedSMTPServer(END_OF_DATA_SESSION, hostile.never_answer(6), timeout=BOUND) as server:
        started = time.monotonic()
        (result,) = selectors_loop.send_all(server.host, server.port, batch(1), timeout=0.3, data_timeout=1.5)
        elapsed = time.monotonic() - started
    server.assert_ok()  # everything up to the data went as the transcript says
    assert 1.5 <= elapsed < 10.0
    assert result.outcome is smtp_fsm.Outcome.UNCERTAIN  # the content went out: it may have been delivered
    assert isinstance(result.error, smtp_fsm.SMTPTimeout) and "end of data" in str(result.error)


def test_the_deadline_is_per_reply_not_per_session() -> None:
    # Every reply drips at 20 ms a byte: the longest (EHLO's, 32 bytes) takes about 0.65 s, all of them
    # (147 bytes) about 3 s, twice the deadline.
    with ScriptedSMTPServer(END_OF_DATA_SESSION, hostile.drip(None, 0.02), timeout=BOUND) as server:
        started = time.monotonic()
        (result,) = selectors_loop.send_all(server.host, server.port, batch(1), timeout=1.5, data_timeout=1.5)
        elapsed = time.monotonic() - started
    server.assert_ok()
    assert result.ok, result
    assert elapsed > 1.5  # longer than any single deadline: each reply restarted it


def test_the_example_runs_as_a_script() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "selectors_loop.py")], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == "3/3 delivered, 3 received"
    assert [line.split(":")[0] for line in lines[:-1]] == [f"user{n}@example.net" for n in range(3)]
