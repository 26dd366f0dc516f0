"""The demo: the classic lab's mail, done properly, against an embedded aiosmtpd on loopback.

The original lab sent one ASCII mail with HELO, AUTH LOGIN, MAIL, RCPT, DATA
and QUIT, and left MIME, Chinese text and attachments "for later".  The demo
sends a message with a Chinese subject, a Chinese body and a binary
attachment through the same steps (with EHLO, which AUTH needs), prints the
transcript with the state after each reply, and shows what the server got.
"""

from __future__ import annotations

import logging
import os
import sys
from email.message import EmailMessage
from pathlib import Path
from typing import TextIO

from .sync import SMTPClient
from .testing.servers import LocalSMTPServer

DEMO_USER = "student@lab3.test"
DEMO_PASSWORD = "lab3-password"  # a throwaway credential for the embedded server only


def demo_message() -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = f"实验三 <{DEMO_USER}>"
    msg["To"] = "老师 <teacher@lab3.test>"
    msg["Subject"] = "你好，SMTP 状态机！"
    msg.set_content(
        "我爱计算机网络！\n"
        "I love computer network!\n"
        ".a line that starts with a dot arrives intact\n"
    )
    attachment = bytes(range(256))
    msg.add_attachment(attachment, maintype="application", subtype="octet-stream", filename="lab3.bin")
    return msg


def run_demo(out: TextIO = sys.stdout, html: Path | None = None, color: bool | None = None,
             view: str = "lab") -> int:
    """Run the demo, print the annotated transcript and what arrived; 0 on success.

    ``html``: also write the session as a stepper page on ``view`` (the lab's path by default).
    """
    from .console import annotated_text

    svgs = None
    if html is not None:
        from .stepper import load_svgs

        svgs = load_svgs(view)  # before the session: without Graphviz nor a shipped SVG, nothing runs
    if color is None:
        color = out.isatty() and "NO_COLOR" not in os.environ
    # aiosmtpd 1.4.6 logs a deprecation warning of its own on every AUTH; it is not ours to show.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    server = LocalSMTPServer(credentials={DEMO_USER: DEMO_PASSWORD}, auth_require_tls=False, pipelining=True)
    with server:
        print(f"embedded aiosmtpd listening on {server.host}:{server.port}\n", file=out)
        # In lockstep, as the lab was: each command waits for its reply (the lab view's path).
        with SMTPClient(server.host, server.port, username=DEMO_USER, password=DEMO_PASSWORD,
                        auth_mechanism="LOGIN", pipelining=False, timeout=10, trace=True) as client:
            result = client.send_message(demo_message())
        steps = client.trace
    print(annotated_text(steps, color=color), file=out)
    print(f"\nresult: {result!r}", file=out)
    if not server.messages:
        print("the server received nothing", file=out)
        return 1
    received = server.messages[0]
    body = received.message.get_body(("plain",))
    attachments = list(received.message.iter_attachments())
    print("\nwhat the server received:", file=out)
    print(f"  MAIL FROM:<{received.mail_from}> {' '.join(received.mail_options)}", file=out)
    print(f"  RCPT TO: {', '.join(received.rcpt_tos)}", file=out)
    print(f"  authenticated as: {received.authenticated_as}", file=out)
    print(f"  Subject: {received.message['Subject']}", file=out)
    if body is not None:
        for line in str(body.get_content()).splitlines():
            print(f"  | {line}", file=out)
    for part in attachments:
        data = part.get_content()
        print(f"  attachment {part.get_filename()}: {len(data)} bytes, intact: {data == bytes(range(256))}",
              file=out)
    if html is not None:
        from .auth import Credentials
        from .stepper import write_stepper

        # The only place a page shows credentials: the embedded server's throw-away account.
        try:
            write_stepper(steps, html, title="smtp_fsm demo: the lab's mail, step by step", view=view,
                          demo_credentials=Credentials(DEMO_USER, DEMO_PASSWORD), svgs=svgs)
        except OSError as exc:
            print(f"smtp-fsm: error: cannot write {html}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        print(f"\nstepper written to {html}", file=out)
    return 0 if result.ok else 1
