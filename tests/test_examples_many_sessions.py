"""examples/many_sessions.py against real local servers: hundreds of sessions from one selectors loop,
each message arriving once, refusals and failed connects settled per session, and a global deadline."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import smtp_fsm
from smtp_fsm.testing.servers import LocalSMTPServer, RecordingHandler

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "examples") not in sys.path:  # examples/ is not a package
    sys.path.insert(0, str(ROOT / "examples"))

import many_sessions  # noqa: E402

BOUND = 60.0  # seconds: the global deadline given to the example in these tests
EHLO_NAME = smtp_fsm.ehlo_name("127.0.0.1")


def messages(count: int, refused: frozenset[int] = frozenset()) -> list[many_sessions.Item]:
    return [("a@example.org", ["nobody@example.net" if n in refused else f"user{n}@example.net"],
             f"Subject: session {n}\r\n\r\nbody {n}\r\n".encode()) for n in range(count)]


def test_two_hundred_sessions_all_deliver_their_message() -> None:
    count = 200
    with LocalSMTPServer(pipelining=True) as server:
        started = time.monotonic()
        results = many_sessions.send_each(server.host, server.port, messages(count), local_hostname=EHLO_NAME,
                                          deadline=BOUND)
        elapsed = time.monotonic() - started
        received = list(server.messages)
        ehlos = [command for command in server.handler.commands if command.startswith("EHLO ")]
    assert elapsed < BOUND
    assert len(results) == count
    assert [result.outcome for result in results] == [smtp_fsm.Outcome.DELIVERED] * count
    assert [list(result.accepted) for result in results] == [[f"user{n}@example.net"] for n in range(count)]
    # Every message arrived exactly once, with its own recipient, each over its own session.
    assert len(received) == count
    assert sorted((m.message["Subject"], m.rcpt_tos) for m in received) == sorted(
        (f"session {n}", (f"user{n}@example.net",)) for n in range(count))
    assert ehlos == [f"EHLO {EHLO_NAME}"] * count


def test_a_refusal_settles_its_own_session_only() -> None:
    handler = RecordingHandler(refuse={"nobody@example.net": "550 5.1.1 no such user"})
    refused = frozenset({3, 7})
    with LocalSMTPServer(handler=handler, pipelining=True) as server:
        results = many_sessions.send_each(server.host, server.port, messages(10, refused), local_hostname=EHLO_NAME,
                                          deadline=BOUND)
        subjects = sorted(m.message["Subject"] for m in server.messages)
    for n, result in enumerate(results):
        if n in refused:
            assert result.outcome is smtp_fsm.Outcome.REFUSED
            assert isinstance(result.error, smtp_fsm.RecipientsRefused)
        else:
            assert result.outcome is smtp_fsm.Outcome.DELIVERED, result
    assert subjects == sorted(f"session {n}" for n in range(10) if n not in refused)


def test_a_refused_connect_ends_each_session_with_nothing_sent() -> None:
    with socket.socket() as closed_port:  # bound, not listening: connects are refused
        closed_port.bind(("127.0.0.1", 0))
        host, port = closed_port.getsockname()[:2]
        started = time.monotonic()
        results = many_sessions.send_each(host, port, messages(5), local_hostname=EHLO_NAME, deadline=BOUND)
        elapsed = time.monotonic() - started
    assert elapsed < 5.0  # ended by the refusal, not by the deadline
    assert [result.outcome for result in results] == [smtp_fsm.Outcome.NOT_SENT] * 5
    for result in results:
        assert isinstance(result.error, smtp_fsm.SMTPError)
        assert isinstance(result.error.__cause__, ConnectionRefusedError)


def test_the_global_deadline_ends_every_session_against_a_server_that_never_greets() -> None:
    # Connects complete in the kernel (up to the backlog) but nobody accepts, so no greeting comes.
    with socket.create_server(("127.0.0.1", 0), backlog=64) as listener:
        host, port = listener.getsockname()[:2]
        started = time.monotonic()
        results = many_sessions.send_each(host, port, messages(20), local_hostname=EHLO_NAME, deadline=0.5)
        elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 5.0
    assert [result.outcome for result in results] == [smtp_fsm.Outcome.NOT_SENT] * 20
    for result in results:
        assert isinstance(result.error, smtp_fsm.SMTPTimeout) and "global deadline" in str(result.error)


def test_the_example_runs_as_a_script() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "many_sessions.py")], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("200 sessions: 200 delivered, 200 received by the server, in "), done.stdout
