"""The README is the manual: its code runs, its output comments are true, its Mermaid is the machine's."""

from __future__ import annotations

import contextlib
import io
import re
import ssl
from pathlib import Path
from typing import Any

import smtp_fsm
from smtp_fsm.testing.servers import LocalSMTPServer, make_test_tls

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)


def block(marker: str) -> str:
    (found,) = [code for code in BLOCKS if marker in code]
    return found


def run_block(marker: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    exec(compile(block(marker), f"README:{marker}", "exec"), namespace)
    return namespace


def test_mermaid_in_readme_is_the_generated_machine() -> None:
    embedded = re.search(r"<!-- mermaid:machine:start -->\n```mermaid\n(.*?)```\n<!-- mermaid:machine:end -->",
                         README, re.S)
    assert embedded is not None, "README lost its Mermaid block: run `make diagrams`"
    assert embedded.group(1) == (ROOT / "diagrams" / "machine.mmd").read_text(encoding="utf-8"), (
        "README's Mermaid differs from diagrams/machine.mmd: run `make diagrams`"
    )


def test_engine_loop_sends_a_message_in_plain_text(smtp_server: LocalSMTPServer) -> None:
    send = run_block("def send(host")["send"]
    result = send(smtp_server.host, smtp_server.port, "a@example.org", ["b@example.org"],
                  b"Subject: loop\r\n\r\nfrom the README\r\n")
    assert result.ok and result.outcome is smtp_fsm.Outcome.DELIVERED
    (received,) = smtp_server.messages
    assert received.message["Subject"] == "loop" and not received.peer_tls


def test_engine_loop_upgrades_with_starttls_when_offered() -> None:
    send = run_block("def send(host")["send"]
    tls = make_test_tls("127.0.0.1")
    with LocalSMTPServer(starttls_context=tls.server_context, require_starttls=True) as server:
        result = send(server.host, server.port, "a@example.org", ["b@example.org"],
                      b"Subject: tls\r\n\r\nover STARTTLS\r\n", tls.client_context)
        assert result.ok
        (received,) = server.messages
        assert received.peer_tls and received.message["Subject"] == "tls"


def test_engine_loop_ends_with_a_tls_error_when_the_handshake_fails() -> None:
    send = run_block("def send(host")["send"]
    tls = make_test_tls("127.0.0.1")
    untrusting = ssl.create_default_context()  # the test CA is not in it: the handshake fails
    with LocalSMTPServer(starttls_context=tls.server_context) as server:
        result = send(server.host, server.port, "a@example.org", ["b@example.org"], b"Subject: x\r\n\r\nx\r\n",
                      untrusting)
        assert result.outcome is smtp_fsm.Outcome.NOT_SENT and isinstance(result.error, smtp_fsm.TLSError)
        assert isinstance(result.error.__cause__, ssl.SSLError)
        assert server.messages == []


def test_engine_loop_ends_when_the_server_refuses_the_sender(scripted_smtp_server: Any) -> None:
    send = run_block("def send(host")["send"]
    server = scripted_smtp_server(
        "S: 220 mx ready\nC: EHLO [127.0.0.1]\nS: 250 mx\nC: MAIL FROM:<a@example.org>\n"
        "S: 550 5.7.1 not you\nC: RSET\nS: 250 ok\nC: QUIT\nS: 221 bye\n")
    result = send(server.host, server.port, "a@example.org", ["b@example.org"], b"Subject: x\r\n\r\nx\r\n")
    assert result.outcome is smtp_fsm.Outcome.REFUSED and isinstance(result.error, smtp_fsm.SenderRefused)


def test_stepping_example_prints_what_its_comments_say() -> None:
    code = block("for reply in [")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README:stepping", "exec"), {})
    expected = [line[2:] for line in code.splitlines() if line.startswith("# ")]
    assert printed.getvalue().splitlines() == expected


def test_replaying_and_stepping_examples_pass_and_fail_as_described() -> None:
    namespace = run_block("def test_the_welcome_mail_goes_as_recorded")
    namespace["test_the_welcome_mail_goes_as_recorded"]()
    namespace["test_the_welcome_mail_step_by_step"]()
    # Without ignore=, the Date (written now) differs from the recording: strict by default.
    from smtp_fsm.testing import ReplayMismatch, replay

    try:
        replay(namespace["WELCOME"], work=namespace["queue_welcome"], local_hostname="client.example")
    except ReplayMismatch as mismatch:
        assert mismatch.expected.startswith(b"Date: Tue, 01 Dec 2026 08:00:00 -0000\r\n"), mismatch
    else:
        raise AssertionError("the Date header should have differed")


def test_the_pool_examples_send_each_message_once(smtp_server: LocalSMTPServer) -> None:
    import asyncio

    newsletter = run_block("async def newsletter(")["newsletter"]
    subscribers = [f"reader{n}@example.net" for n in range(30)]
    outcomes = asyncio.run(newsletter(smtp_server.host, smtp_server.port, subscribers))
    assert outcomes == dict.fromkeys(subscribers, smtp_fsm.Outcome.DELIVERED)
    work = run_block("def work(")["work"]
    tasks = [(f"user{n}@example.net", f"Subject: task {n}\r\n\r\ndone\r\n") for n in range(12)]
    assert work(smtp_server.host, smtp_server.port, tasks) == [smtp_fsm.Outcome.DELIVERED] * 12
    received = sorted(rcpt for message in smtp_server.messages for rcpt in message.rcpt_tos)
    assert received == sorted(subscribers + [to for to, _ in tasks])  # each once
