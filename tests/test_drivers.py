"""Both drivers against a real aiosmtpd server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import threading
from email.message import EmailMessage

import pytest
from drivers import DRIVERS, make_client
from lab import LAB_MESSAGE, LAB_NORMALISED

import smtp_fsm
from smtp_fsm import SMTPTimeout, TLSError, TLSHandshakeTimeout
from smtp_fsm.testing import LocalSMTPServer, RecordingHandler, ScriptedSMTPServer, free_port

both = pytest.mark.parametrize("kind", sorted(DRIVERS))



def chinese_message() -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "张三 <zhang@example.test>"
    msg["To"] = "李四 <li@example.test>"
    msg["Subject"] = "你好，世界"
    msg.set_content("你好！这是一封测试邮件。\n.\n.. two dots\n")
    msg.add_attachment(bytes(range(256)) * 4, maintype="application", subtype="octet-stream", filename="数据.bin")
    return msg


@both
def test_chinese_message_with_attachment_arrives_intact(kind: str, smtp_server: LocalSMTPServer) -> None:
    msg = chinese_message()
    with make_client(kind, smtp_server.host, smtp_server.port, timeout=10) as client:
        result = client.send_message(msg)
    assert result.ok and list(result.accepted) == ["li@example.test"]
    assert "queued as 1" in result.reply.text
    (received,) = smtp_server.messages
    assert received.mail_from == "zhang@example.test"
    assert "BODY=8BITMIME" in received.mail_options
    got = received.message
    assert got["Subject"] == "你好，世界"
    assert str(got["From"]) == "张三 <zhang@example.test>"
    body = got.get_body(("plain",))
    assert body is not None
    assert body.get_content().replace("\r\n", "\n") == "你好！这是一封测试邮件。\n.\n.. two dots\n"
    (attachment,) = got.iter_attachments()
    assert attachment.get_filename() == "数据.bin"
    assert attachment.get_content() == bytes(range(256)) * 4


@both
def test_three_messages_one_connection_and_send_many(kind: str, smtp_server: LocalSMTPServer) -> None:
    with make_client(kind, smtp_server.host, smtp_server.port, timeout=10) as client:
        for number in range(3):
            client.sendmail("a@example.test", ["b@example.test"], f"Subject: {number}\r\n\r\nbody {number}\r\n")
        results = client.send_many([("a@example.test", "b@example.test", f"Subject: m{n}\n\nmany {n}\n")
                                    for n in range(3)])
    assert [r.ok for r in results] == [True, True, True]
    assert [m.message["Subject"] for m in smtp_server.messages] == ["0", "1", "2", "m0", "m1", "m2"]
    assert [r.reply.text.rsplit(" ", 1)[-1] for r in results] == ["4", "5", "6"]


@both
def test_send_many_pipelined_against_pipelining_aiosmtpd(kind: str, smtp_server_factory: object) -> None:
    server = smtp_server_factory(pipelining=True)  # type: ignore[operator]
    items = [("a@example.test", [f"r{n}@example.test"], f"Subject: p{n}\n\nbody\n") for n in range(5)]
    with make_client(kind, server.host, server.port, timeout=10, trace=True) as client:
        assert client.capabilities.pipelining
        results = client.send_many(items)
        trace = client.trace
    assert all(r.ok for r in results)
    assert [m.rcpt_tos for m in server.messages] == [(f"r{n}@example.test",) for n in range(5)]
    # The end of each message travels with the next message's MAIL/RCPT/DATA.
    assert sum(1 for step in trace if b"body\r\n.\r\nMAIL FROM:" in step.sent) == 4


def test_asyncio_send_many_is_carried_by_the_transport_callback(smtp_server_factory: object,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """While the task waits, the link's pilot feeds the engine and writes its answers: a stream of
    pipelined messages wakes the task a few times, not once per message, and every message arrives."""
    from smtp_fsm._aio_io import Link

    server = smtp_server_factory(pipelining=True)  # type: ignore[operator]
    waits = 0
    original = Link.wait

    async def counted(self: Link) -> None:
        nonlocal waits
        waits += 1
        await original(self)

    monkeypatch.setattr(Link, "wait", counted)
    count = 40
    items = [("a@example.test", [f"r{n}@example.test"], f"Subject: c{n}\n\nbody {n}\n") for n in range(count)]

    async def scenario() -> list[smtp_fsm.SendResult]:
        async with smtp_fsm.AsyncSMTPClient(server.host, server.port, timeout=10) as client:
            before = waits
            results = await client.send_many(items)
            assert waits - before <= 3, waits - before  # (without the pilot: about two per message)
            return results

    results = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert [r.ok for r in results] == [True] * count
    assert [m.message["Subject"] for m in server.messages] == [f"c{n}" for n in range(count)]


@both
def test_recipient_refused_while_another_accepted(kind: str) -> None:
    handler = RecordingHandler(refuse={"nobody@example.test": "550 5.1.1 no such user"})
    with LocalSMTPServer(handler=handler) as server, make_client(kind, server.host, server.port, timeout=10) as c:
        result = c.sendmail("a@example.test", ["b@example.test", "nobody@example.test"], b"Subject: x\r\n\r\nhi\r\n")
        assert list(result.accepted) == ["b@example.test"]
        assert result.refused["nobody@example.test"].code == 550
        assert result.refused["nobody@example.test"].enhanced_code == "5.1.1"
        # Everyone refused raises, and the connection stays usable.
        with pytest.raises(smtp_fsm.RecipientsRefused) as info:
            c.sendmail("a@example.test", ["nobody@example.test"], b"Subject: y\r\n\r\nhi\r\n")
        assert info.value.replies["nobody@example.test"].code == 550
        assert c.noop().code == 250
        c.sendmail("a@example.test", ["b@example.test"], b"Subject: z\r\n\r\nhi\r\n")
    assert [m.message["Subject"] for m in server.messages] == ["x", "z"]


@both
def test_dot_lines_and_bare_line_endings_arrive_normalised(kind: str, smtp_server: LocalSMTPServer) -> None:
    payload = b"Subject: dots\n\n.starts with a dot\n.\n..\nbare CR\rmixed\r\nend"
    with make_client(kind, smtp_server.host, smtp_server.port, timeout=10) as client:
        client.sendmail("a@example.test", "b@example.test", payload)
    (received,) = smtp_server.messages
    assert received.content == (
        b"Subject: dots\r\n\r\n.starts with a dot\r\n.\r\n..\r\nbare CR\r\nmixed\r\nend\r\n"
    )


@both
def test_lab_message_fixture_arrives_normalised(kind: str, smtp_server: LocalSMTPServer) -> None:
    with make_client(kind, smtp_server.host, smtp_server.port, timeout=10) as client:
        client.sendmail("student@163.test", ["teacher@qq.test"], LAB_MESSAGE)
    (received,) = smtp_server.messages
    assert received.content == LAB_NORMALISED
    assert received.message["subject"] == "Hello"


@both
def test_null_sender(kind: str, smtp_server: LocalSMTPServer) -> None:
    with make_client(kind, smtp_server.host, smtp_server.port, timeout=10) as client:
        client.sendmail("", ["b@example.test"], b"Subject: bounce\r\n\r\nreturned\r\n")
    assert smtp_server.messages[0].mail_from == "<>" or smtp_server.messages[0].mail_from == ""
    assert "MAIL <>" in smtp_server.handler.commands


@both
def test_bcc_stripped_and_in_envelope(kind: str, smtp_server: LocalSMTPServer) -> None:
    msg = EmailMessage()
    msg["From"] = "a@example.test"
    msg["To"] = "b@example.test"
    msg["Bcc"] = "hidden@example.test"
    msg["Subject"] = "bcc"
    msg.set_content("hi")
    with make_client(kind, smtp_server.host, smtp_server.port, timeout=10) as client:
        client.send_message(msg)
    (received,) = smtp_server.messages
    assert set(received.rcpt_tos) == {"b@example.test", "hidden@example.test"}
    assert b"hidden@example.test" not in received.content
    assert msg["Bcc"] == "hidden@example.test"  # the caller's message is untouched


@both
def test_invalid_address_raises_before_a_byte_and_connection_stays_usable(
    kind: str, smtp_server: LocalSMTPServer
) -> None:
    with make_client(kind, smtp_server.host, smtp_server.port, timeout=10) as client:
        for bad in ("evil@example.test\r\nRCPT TO:<x@y>", "a<b>@example.test", "nul\x00@example.test"):
            with pytest.raises(smtp_fsm.LocalProtocolError):
                client.sendmail("a@example.test", [bad], b"Subject: x\r\n\r\nhi\r\n")
        client.sendmail("a@example.test", ["b@example.test"], b"Subject: ok\r\n\r\nhi\r\n")
    assert [c for c in smtp_server.handler.commands if c.startswith("RCPT")] == ["RCPT b@example.test"]


@both
def test_default_ehlo_name_is_an_address_literal(kind: str, smtp_server: LocalSMTPServer) -> None:
    with make_client(kind, smtp_server.host, smtp_server.port, timeout=10):
        pass
    assert smtp_server.handler.commands[0] == "EHLO [127.0.0.1]"


@both
def test_quit_on_exit_and_capabilities(kind: str, smtp_server: LocalSMTPServer) -> None:
    with make_client(kind, smtp_server.host, smtp_server.port, timeout=10) as client:
        assert client.capabilities.eightbitmime
        assert client.capabilities.max_size == 33554432
        state_before = client.session.state
    assert state_before == "ready"
    assert client.session.state == "closed"


@both
def test_bad_arguments_raise_before_connecting(kind: str) -> None:
    port = free_port()
    with socket.create_server(("127.0.0.1", port)) as listener:
        listener.settimeout(0.2)
        for kwargs in ({"starttls": "sometimes"}, {"username": "u"}, {"local_hostname": "bad name\r\n"},
                       {"timeout": 0}, {"auth_mechanism": "KERBEROS"}):
            with pytest.raises(smtp_fsm.LocalProtocolError):
                make_client(kind, "127.0.0.1", port, **kwargs)
        with pytest.raises(TimeoutError):
            listener.accept()  # nobody connected


@both
def test_connection_refused_is_a_connect_error(kind: str) -> None:
    with pytest.raises(smtp_fsm.SMTPConnectError), make_client(kind, "127.0.0.1", free_port(), timeout=5):
        pass


def test_asyncio_cancel_closes_the_connection() -> None:
    async def scenario() -> None:
        silent = socket.create_server(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        accepted: list[socket.socket] = []

        async def serve() -> None:
            loop = asyncio.get_running_loop()
            silent.setblocking(False)
            conn, _ = await loop.sock_accept(silent)
            accepted.append(conn)
            await loop.sock_sendall(conn, b"220 hi\r\n")
            data = await loop.sock_recv(conn, 1024)  # EHLO
            assert data.startswith(b"EHLO")
            await loop.sock_sendall(conn, b"250 ok\r\n")
            await loop.sock_recv(conn, 1024)  # MAIL..., then silence

        server_task = asyncio.create_task(serve())
        client = smtp_fsm.AsyncSMTPClient("127.0.0.1", port, timeout=10, pipelining=False)
        await client.connect()
        send = asyncio.create_task(client.sendmail("a@example.test", ["b@example.test"], b"x\r\n"))
        await asyncio.sleep(0.2)
        send.cancel()
        with pytest.raises(asyncio.CancelledError):
            await send
        assert client.session.state in ('closed', 'failed') or client._link is None
        with pytest.raises(smtp_fsm.SMTPError):
            await client.noop()
        await asyncio.wait_for(server_task, 5)
        for conn in accepted:
            conn.close()
        silent.close()

    asyncio.run(asyncio.wait_for(scenario(), 20))


def test_asyncio_call_cancelled_before_its_task_runs_writes_nothing_more() -> None:
    """A cancel that lands in the same turn as the 354 (asyncio.wait_for's outer task cancels the call
    from a callback, its task runs a turn later): the content is never written, so the message the
    caller saw cancelled is not delivered behind its back."""
    got: list[bytes] = []
    cancel: list[asyncio.Task[smtp_fsm.SendResult]] = []

    class CancelsAt354(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: asyncio.Transport = transport  # type: ignore[assignment]
            self.buf, self.data_mode = b"", False
            self.transport.write(b"220 hi\r\n")

        def data_received(self, data: bytes) -> None:
            if self.data_mode:
                got.append(data)
                return
            self.buf += data
            while b"\r\n" in self.buf:
                line, self.buf = self.buf.split(b"\r\n", 1)
                if line.upper().startswith(b"DATA"):
                    self.data_mode = True
                    asyncio.get_running_loop().call_soon(cancel[0].cancel)
                    self.transport.write(b"354 go\r\n")
                else:
                    self.transport.write(b"250 ok\r\n")

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(CancelsAt354, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = smtp_fsm.AsyncSMTPClient("127.0.0.1", port, timeout=5, pipelining=False)
        await client.connect()
        cancel.append(asyncio.create_task(client.sendmail("a@example.test", ["b@example.test"], b"body\r\n")))
        with pytest.raises(asyncio.CancelledError):
            await cancel[0]
        await asyncio.sleep(0.2)  # what the client wrote has arrived
        assert b"".join(got) == b""
        client.close()
        server.close()

    asyncio.run(asyncio.wait_for(scenario(), 10))


class _ShutsDownDuringContent(threading.Thread):
    """Accepts one message, then answers the next DATA with 354, reads a little, says 421 and closes."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(10)
        self.port = self.listener.getsockname()[1]

    def run(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            conn.settimeout(10)
            reader = conn.makefile("rb")
            conn.sendall(b"220 mx ESMTP\r\n")
            reader.readline()  # EHLO
            conn.sendall(b"250 mx\r\n")
            for line in iter(reader.readline, b""):
                if line == b"DATA\r\n":
                    break
                conn.sendall(b"250 ok\r\n")
            conn.sendall(b"354 go\r\n")
            while reader.readline() not in (b".\r\n", b""):
                pass
            conn.sendall(b"250 queued as 1\r\n")
            for line in iter(reader.readline, b""):
                if line == b"DATA\r\n":
                    break
                conn.sendall(b"250 ok\r\n")
            conn.sendall(b"354 go\r\n")
            reader.read(1000)
            conn.sendall(b"421 4.3.0 shutting down\r\n")
            conn.shutdown(socket.SHUT_RDWR)
        self.listener.close()


@both
def test_server_leaving_during_a_large_content_is_reported_with_its_421(kind: str) -> None:
    server = _ShutsDownDuringContent()
    server.start()
    big = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 40_000  # 40 MB: more than the socket buffers
    items = [("a@example.test", ["b@example.test"], b"Subject: small\r\n\r\nx\r\n"),
             ("a@example.test", ["b@example.test"], big),
             ("a@example.test", ["b@example.test"], b"Subject: never\r\n\r\nx\r\n")]
    client = make_client(kind, "127.0.0.1", server.port, timeout=10, pipelining=False)
    with pytest.raises(smtp_fsm.ServerDisconnected) as info, client:
        client.send_many(items)
    server.join(10)
    assert info.value.reply is not None and info.value.reply.code == 421
    assert [r.reply.text for r in info.value.completed] == ["queued as 1"]
    # The big message's content went out with no final reply: it may have been stored.
    assert info.value.uncertain == (items[1],) and info.value.unsent == (items[2],)


@both
def test_work_given_before_connecting_raises_and_queues_nothing(kind: str, smtp_server: LocalSMTPServer) -> None:
    client = make_client(kind, smtp_server.host, smtp_server.port, timeout=10)
    with pytest.raises(smtp_fsm.LocalProtocolError, match="not connected"):
        client.sendmail("a@example.test", ["b@example.test"], b"x\r\n")
    with client:
        client.noop()
    assert smtp_server.messages == []


@both
def test_a_stalled_starttls_handshake_is_a_tls_handshake_timeout(kind: str) -> None:
    """The handshake has its own timeout in both drivers; the per-reply deadline does not claim it."""
    stalled = "S: 220 mx ESMTP\nC: EHLO client.example\nS: 250-mx\nS: 250 STARTTLS\nC: STARTTLS\nS: 220 go ahead\n"
    with ScriptedSMTPServer(stalled, timeout=5) as server:  # it reads the ClientHello and never answers
        with pytest.raises(TLSHandshakeTimeout) as info:
            with make_client(kind, server.host, server.port, local_hostname="client.example", starttls="required",
                             timeout=0.5):
                pass
    assert isinstance(info.value, SMTPTimeout) and isinstance(info.value, TLSError)
