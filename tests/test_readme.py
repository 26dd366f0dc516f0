"""The README is the manual: its code runs, its output comments are true, its Mermaid is the machine's."""

from __future__ import annotations

import contextlib
import io
import re
import socket
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


def test_plain_socket_loop_sends_a_message(smtp_server: LocalSMTPServer) -> None:
    send_one = run_block("def send_one")["send_one"]
    result = send_one(smtp_server.host, smtp_server.port, "a@example.org", ["b@example.org"],
                      b"Subject: loop\r\n\r\nfrom the README\r\n")
    assert result.ok
    assert smtp_server.messages[0].message["Subject"] == "loop"


def test_memory_bio_starttls_loop() -> None:
    starttls_loop = run_block("def starttls_loop")["starttls_loop"]
    tls = make_test_tls("127.0.0.1")
    with LocalSMTPServer(starttls_context=tls.server_context, require_starttls=True) as server:
        session = smtp_fsm.ClientSession(loopback=True, starttls="required")
        session.sendmail("a@example.org", ["b@example.org"], b"Subject: bio\r\n\r\nover MemoryBIO TLS\r\n")
        session.quit()
        with socket.create_connection((server.host, server.port), timeout=10) as sock:
            sock.settimeout(10)
            starttls_loop(sock, session, tls.client_context, "127.0.0.1")
        assert session.state == "closed"
        (received,) = server.messages
        assert received.peer_tls and received.message["Subject"] == "bio"


def test_stepping_example_prints_what_its_comments_say() -> None:
    code = block("for reply in [")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README:stepping", "exec"), {})
    expected = [line[2:] for line in code.splitlines() if line.startswith("# ")]
    assert printed.getvalue().splitlines() == expected
