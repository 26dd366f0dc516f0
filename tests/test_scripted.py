"""The scripted server plays transcripts against both drivers and reports clients that deviate."""

from __future__ import annotations

import asyncio
import socket

import pytest

from smtp_fsm import AsyncSMTPClient, ServerDisconnected, SMTPClient
from smtp_fsm.testing import ScriptedSMTPServer, to_text

MESSAGE = b"Subject: hi\r\n\r\nhello\r\n"

SESSION = """
S: 220 mx.example ESMTP scripted
C: EHLO client.example
S: 250-mx.example
S: 250-PIPELINING
S: 250 AUTH PLAIN
C: AUTH PLAIN <credentials>
S: 235 2.7.0 Authentication successful
C: MAIL FROM:<a@example.org>
C: RCPT TO:<b@example.net>
C: DATA
S: 250 OK
S: 250 OK
S: 354 go ahead
C: Subject: hi
C:
C: hello
C: .
S: 250 2.0.0 queued as 42
C: QUIT
S: 221 bye
"""

OPTIONS = {"local_hostname": "client.example", "username": "alice", "password": "pw", "timeout": 5.0}


def send_sync(server: ScriptedSMTPServer, to: str = "b@example.net") -> str:
    with SMTPClient(server.host, server.port, **OPTIONS) as client:
        result = client.sendmail("a@example.org", [to], MESSAGE)
    assert result.reply is not None
    return result.reply.text


async def send_async(server: ScriptedSMTPServer, to: str = "b@example.net") -> str:
    async with AsyncSMTPClient(server.host, server.port, **OPTIONS) as client:
        result = await client.sendmail("a@example.org", [to], MESSAGE)
    assert result.reply is not None
    return result.reply.text


def test_blocking_driver_follows_the_transcript():
    with ScriptedSMTPServer(SESSION) as server:
        assert send_sync(server) == "2.0.0 queued as 42"
    server.assert_ok()
    assert server.received[0].startswith(b"EHLO client.example\r\nAUTH PLAIN ")


def test_asyncio_driver_follows_the_transcript():
    async def main() -> None:
        async with ScriptedSMTPServer(SESSION) as server:
            assert await send_async(server) == "2.0.0 queued as 42"
        server.assert_ok()

    asyncio.run(main())


def test_fixture_checks_at_teardown(scripted_smtp_server):
    server = scripted_smtp_server(SESSION)
    send_sync(server)


@pytest.mark.parametrize("driver", ["sync", "async"])
def test_a_deviating_client_is_reported_clearly(driver):
    server = ScriptedSMTPServer(SESSION).start()
    try:
        with pytest.raises(ServerDisconnected) as info:
            if driver == "sync":
                send_sync(server, to="someone.else@example.net")
            else:
                asyncio.run(send_async(server, to="someone.else@example.net"))
        assert info.value.reply is not None and info.value.reply.code == 421
    finally:
        server.stop()
    assert len(server.failures) == 1
    failure = server.failures[0]
    assert "transcript line 10" in failure
    assert "someone.else@example.net" in failure and "b@example.net" in failure
    with pytest.raises(AssertionError, match="deviate"):
        server.assert_ok()


def test_a_silent_client_times_out_the_server():
    with ScriptedSMTPServer(SESSION, timeout=0.5) as server, \
            socket.create_connection((server.host, server.port)) as sock:
        sock.settimeout(5)
        assert sock.recv(100).startswith(b"220 ")
        assert server.wait(5)
    assert len(server.failures) == 1 and "timed out" in server.failures[0]


def test_client_bytes_after_the_end_are_a_failure():
    with ScriptedSMTPServer("S: 220 hi\nC: EHLO x.example\nS: 250 hi\n") as server, \
            socket.create_connection((server.host, server.port)) as sock:
        sock.settimeout(5)
        sock.recv(100)
        sock.sendall(b"EHLO x.example\r\n")
        sock.recv(100)
        sock.sendall(b"NOOP\r\n")
    assert "after the end of the transcript" in " ".join(server.failures)


def test_several_connections_each_play_the_transcript():
    with ScriptedSMTPServer(SESSION, connections=2) as server:
        send_sync(server)
        send_sync(server)
    server.assert_ok()
    assert server.served == 2


def test_a_recorded_session_is_a_script(smtp_server):
    """Record against aiosmtpd, then play the recording to both drivers."""
    with SMTPClient(smtp_server.host, smtp_server.port, local_hostname="client.example", trace=True,
                    timeout=5) as client:
        client.sendmail("a@example.org", ["b@example.net"], MESSAGE)
        client.noop()
    script = to_text(client.trace)

    with ScriptedSMTPServer(script) as server, SMTPClient(server.host, server.port, local_hostname="client.example",
                                                         timeout=5) as again:
        again.sendmail("a@example.org", ["b@example.net"], MESSAGE)
        again.noop()
    server.assert_ok()

    async def main() -> None:
        async with ScriptedSMTPServer(script) as server:
            async with AsyncSMTPClient(server.host, server.port, local_hostname="client.example", timeout=5) as c:
                await c.sendmail("a@example.org", ["b@example.net"], MESSAGE)
                await c.noop()
        server.assert_ok()

    asyncio.run(main())


def test_tls_certificates_fixture(smtp_server_factory, tls_certificates):
    server = smtp_server_factory(starttls_context=tls_certificates.server_context, require_starttls=True)
    with SMTPClient(server.host, server.port, starttls="required", tls_context=tls_certificates.client_context,
                    server_hostname="localhost", timeout=10) as client:
        client.sendmail("a@example.org", ["b@example.net"], MESSAGE)
    assert server.messages[0].peer_tls
    assert tls_certificates.ca_pem.startswith(b"-----BEGIN CERTIFICATE-----")
