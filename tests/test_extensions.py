"""ESMTP extensions through both drivers: aiosmtpd, Postfix's smtp-sink, and the ESMTP test server."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from conftest import require_tool
from drivers import DRIVERS, make_client

import smtp_fsm
from smtp_fsm.testing import LocalSMTPServer, RecordingHandler, free_port
from smtp_fsm.testing.esmtp import ESMTPServer

both = pytest.mark.parametrize("kind", sorted(DRIVERS))


@both
def test_smtputf8_chinese_local_part_and_domain(kind: str) -> None:
    msg = EmailMessage()
    msg["From"] = "发件人 <发件人@例子.广告>"
    msg["To"] = "用户 <用户@例子.广告>"
    msg["Subject"] = "国际化邮件"
    msg.set_content("你好")
    with LocalSMTPServer(smtputf8=True) as server:
        with make_client(kind, server.host, server.port, timeout=10) as client:
            assert client.capabilities.smtputf8
            result = client.send_message(msg)
        assert list(result.accepted) == ["用户@例子.广告"]
        (received,) = server.messages
    assert received.mail_from == "发件人@例子.广告" and received.rcpt_tos == ("用户@例子.广告",)
    assert received.smtp_utf8 and "SMTPUTF8" in received.mail_options
    assert received.message["To"] == "用户 <用户@例子.广告>"


@both
def test_idna_domain_without_smtputf8_and_utf8_local_part_refused(kind: str, smtp_server: LocalSMTPServer) -> None:
    with make_client(kind, smtp_server.host, smtp_server.port, timeout=10) as client:
        assert not client.capabilities.smtputf8
        client.sendmail("a@example.test", ["user@例子.广告"], b"Subject: idna\r\n\r\nhi\r\n")
        with pytest.raises(smtp_fsm.LocalProtocolError, match="SMTPUTF8"):
            client.sendmail("a@example.test", ["用户@例子.广告"], b"Subject: no\r\n\r\nhi\r\n")
    assert smtp_server.messages[0].rcpt_tos == ("user@" + "例子.广告".encode("idna").decode(),)
    assert len(smtp_server.messages) == 1
    assert not any("用户" in command for command in smtp_server.handler.commands)


@both
def test_size_limit_enforced_locally_and_552_from_server(kind: str) -> None:
    big = b"Subject: big\r\n\r\n" + b"x" * 900 + b"\r\n" + b"y" * 900 + b"\r\n"
    with LocalSMTPServer(data_size_limit=1000) as server:
        with make_client(kind, server.host, server.port, timeout=10) as client:
            assert client.capabilities.max_size == 1000
            with pytest.raises(smtp_fsm.LocalProtocolError, match="at most 1000"):
                client.sendmail("a@example.test", ["b@example.test"], big)
            client.sendmail("a@example.test", ["b@example.test"], b"Subject: small\r\n\r\nok\r\n")
        assert [c for c in server.handler.commands if c.startswith("MAIL")] == ["MAIL a@example.test"]
        small = b"Subject: small\r\n\r\nok\r\n"
        assert server.messages[0].mail_options == (f"SIZE={len(small)}",)
    handler = RecordingHandler(data_reply="552 5.3.4 Message size exceeds fixed limit")
    with LocalSMTPServer(handler=handler) as server, make_client(kind, server.host, server.port, timeout=10) as c:
        with pytest.raises(smtp_fsm.DataRefused) as info:
            c.sendmail("a@example.test", ["b@example.test"], b"Subject: s\r\n\r\nok\r\n")
        assert info.value.code == 552 and "5.3.4" in str(info.value)
        assert c.noop().code == 250


@both
def test_lmtp_per_recipient_delivery(kind: str) -> None:
    handler = RecordingHandler(lmtp_refuse={"full@example.test": "552 5.2.2 mailbox full"})
    with LocalSMTPServer(handler=handler, lmtp=True) as server:
        with make_client(kind, server.host, server.port, lmtp=True, timeout=10) as client:
            result = client.sendmail("a@example.test", ["ok@example.test", "full@example.test"],
                                     b"Subject: l\r\n\r\n.\r\n")
    assert list(result.accepted) == ["ok@example.test"]
    assert result.refused["full@example.test"].code == 552
    assert result.delivery["ok@example.test"].code == 250
    assert result.delivery["full@example.test"].enhanced_code == "5.2.2"
    assert server.handler.commands[0].startswith("EHLO")  # aiosmtpd's LMTP routes LHLO through its EHLO hook


@both
def test_pipelining_sends_the_whole_group_before_any_reply(kind: str) -> None:
    with ESMTPServer(hold_replies_until_data=True, keywords=("PIPELINING", "8BITMIME")) as server:
        with make_client(kind, server.host, server.port, timeout=5) as client:
            results = client.send_many([("a@example.test", ["b@example.test", "c@example.test"], b"one\r\n"),
                                        ("a@example.test", ["d@example.test"], b"two\r\n")])
        assert [r.ok for r in results] == [True, True]
        assert [m.content for m in server.messages] == [b"one\r\n", b"two\r\n"]
    # A client that does not pipeline waits for the MAIL reply and never gets it.
    with ESMTPServer(hold_replies_until_data=True, keywords=("PIPELINING",)) as server:
        with make_client(kind, server.host, server.port, timeout=1, pipelining=False) as client:
            started = time.monotonic()
            with pytest.raises(smtp_fsm.SMTPTimeout):
                client.sendmail("a@example.test", ["b@example.test"], b"x\r\n")
            assert time.monotonic() - started < 5


@both
@pytest.mark.parametrize("pipelining", [True, False])
def test_chunking_bdat_several_chunks_no_stuffing(kind: str, pipelining: bool) -> None:
    payload = b"Subject: chunks\r\n\r\n" + b".dot line\r\n" * 50
    with ESMTPServer() as server:
        with make_client(kind, server.host, server.port, timeout=5, chunk_size=128, pipelining=pipelining) as client:
            result = client.sendmail("a@example.test", ["b@example.test"], payload)
            assert result.reply.text == "2.0.0 queued as Q1"
        (message,) = server.messages
    assert message.content == payload  # BDAT carries the content as is: no dot-stuffing
    bdat = [c for c in server.commands if c.startswith("BDAT")]
    assert len(bdat) == -(-len(payload) // 128) and bdat[-1].endswith("LAST")
    assert "DATA" not in server.commands


@both
def test_dsn_parameters_xtext_encoded(kind: str) -> None:
    with ESMTPServer() as server, make_client(kind, server.host, server.port, timeout=5) as client:
        client.sendmail("a@example.test", ["b+tag@example.test"], b"Subject: dsn\r\n\r\nx\r\n",
                        notify=["success", "failure"], ret="hdrs", envid="id=1 2")
    mail = next(c for c in server.commands if c.startswith("MAIL"))
    rcpt = next(c for c in server.commands if c.startswith("RCPT"))
    assert mail.endswith(" RET=HDRS ENVID=id+3D1+202")
    assert rcpt == "RCPT TO:<b+tag@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b+2Btag@example.test"


@both
def test_dsn_refused_locally_when_not_offered(kind: str, smtp_server: LocalSMTPServer) -> None:
    with make_client(kind, smtp_server.host, smtp_server.port, timeout=10) as client:
        with pytest.raises(smtp_fsm.LocalProtocolError, match="DSN"):
            client.sendmail("a@example.test", ["b@example.test"], b"x\r\n", notify=["NEVER"])
        assert client.noop().code == 250


@both
def test_enhanced_status_codes_in_results_and_errors(kind: str) -> None:
    with ESMTPServer(refuse={"gone@example.test": "550 5.1.1 <gone@example.test>: user unknown"}) as server:
        with make_client(kind, server.host, server.port, timeout=5) as client:
            assert client.capabilities.enhanced_status_codes
            result = client.sendmail("a@example.test", ["b@example.test", "gone@example.test"], b"x\r\n")
            assert result.accepted["b@example.test"].enhanced_code == "2.1.5"
            assert result.refused["gone@example.test"].enhanced_code == "5.1.1"
            with pytest.raises(smtp_fsm.RecipientsRefused, match=r"550 5\.1\.1"):
                client.sendmail("a@example.test", ["gone@example.test"], b"x\r\n")


@both
@pytest.mark.parametrize("pipelining", [True, False])
def test_452_recipients_go_again_in_a_following_transaction(kind: str, pipelining: bool) -> None:
    recipients = [f"r{n}@example.test" for n in range(5)]
    with ESMTPServer(max_recipients=2, keywords=("PIPELINING", "8BITMIME")) as server:
        with make_client(kind, server.host, server.port, timeout=5, pipelining=pipelining) as client:
            result = client.sendmail("a@example.test", recipients, b"Subject: many\r\n\r\nhello\r\n")
            after = client.sendmail("a@example.test", ["z@example.test"], b"next\r\n")
        assert sorted(result.accepted) == recipients and not result.refused
        assert [len(m.rcpts) for m in server.messages] == [2, 2, 1, 1]
        assert after.ok


@pytest.fixture
def smtp_sink() -> Iterator[tuple[str, int]]:
    sink = require_tool("smtp-sink", "apt-get install postfix (preseeded; see README)")
    port = free_port()
    process = subprocess.Popen([sink, "-u", "nobody", f"127.0.0.1:{port}", "128"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                import socket

                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield "127.0.0.1", port
    finally:
        process.terminate()
        process.wait(10)


@both
def test_smtp_sink_real_pipelining_server(kind: str, smtp_sink: tuple[str, int]) -> None:
    host, port = smtp_sink
    items = [("a@example.test", [f"r{n}@example.test"], f"Subject: {n}\r\n\r\n.dot\r\nbody {n}\r\n") for n in range(50)]
    with make_client(kind, host, port, timeout=10, trace=True) as client:
        assert client.capabilities.pipelining and client.capabilities.dsn
        results = client.send_many(items)
        single = client.sendmail("a@example.test", ["x@example.test"], b"Subject: one\r\n\r\nx\r\n")
        trace = client.trace
    assert all(r.ok for r in results) and single.ok
    assert all(r.reply is not None and r.reply.code == 250 for r in results)
    # One round trip per message in the stream: each write carries the next message's group.
    assert sum(1 for step in trace if b"\r\n.\r\nMAIL FROM:" in step.sent) == 49


@both
@pytest.mark.parametrize("pipelining", [True, False])
def test_send_many_cut_short_by_421_reports_completed_and_unsent(kind: str, pipelining: bool) -> None:
    items = [("a@example.test", [f"r{n}@example.test"], f"Subject: {n}\r\n\r\nx\r\n") for n in range(5)]
    with ESMTPServer(shutdown_after=2, keywords=("PIPELINING",)) as server:
        client = make_client(kind, server.host, server.port, timeout=5, pipelining=pipelining)
        with pytest.raises(smtp_fsm.ServerDisconnected) as info, client:
            client.send_many(items)
    error = info.value
    assert error.reply is not None and error.reply.code == 421
    assert [r.reply.text for r in error.completed] == ["2.0.0 queued as Q1", "2.0.0 queued as Q2"]
    assert error.unsent == tuple(items[2:]) and error.uncertain == ()
    assert [r.outcome for r in error.completed] == ["delivered", "delivered"]
    assert len(server.messages) == 2


@both
def test_send_many_cut_short_by_the_connection_ending(kind: str) -> None:
    items = [("a@example.test", [f"r{n}@example.test"], f"Subject: {n}\r\n\r\nx\r\n") for n in range(4)]
    with ESMTPServer(shutdown_after=1, shutdown_reply=None, keywords=("PIPELINING",)) as server:
        client = make_client(kind, server.host, server.port, timeout=5)
        with pytest.raises(smtp_fsm.ServerDisconnected) as info, client:
            client.send_many(items)
    assert info.value.reply is None and info.value.state == "data"
    assert [r.ok for r in info.value.completed] == [True]
    assert info.value.unsent == tuple(items[1:]) and info.value.uncertain == ()
