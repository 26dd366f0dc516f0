"""The classic teaching lab's conversation, replayed by the engine: what the lab view says on each edge.

The lab (../shared/seed-lab3-smtp-client.txt) sends one mail with AUTH LOGIN.
Its conversation is written here once as a transcript, in the corrected form
(EHLO, not the lab script's HELO); the engine replays it, so each step's edge
is the table row the engine took and its words are the bytes on the wire --
nothing is drawn by hand.
"""

from __future__ import annotations

import base64
import binascii
import contextlib

from .protocol import table
from .trace import MASK, TraceStep

#: The lab's session as the RFCs want it (a student's client against a server offering AUTH LOGIN).
LAB_TRANSCRIPT = """\
S: 220 mx.example ESMTP
C: EHLO client.example
S: 250-mx.example
S: 250 AUTH LOGIN PLAIN
C: AUTH LOGIN
S: 334 VXNlcm5hbWU6
C: <credentials>
S: 334 UGFzc3dvcmQ6
C: <credentials>
S: 235 2.7.0 Authentication successful
C: MAIL FROM:<student@example.org>
S: 250 2.1.0 OK
C: RCPT TO:<teacher@example.org>
S: 250 2.1.5 OK
C: DATA
S: 354 End data with <CR><LF>.<CR><LF>
C: Subject: lab
C:
C: I love computer network!
C: .
S: 250 2.0.0 OK: queued
C: QUIT
S: 221 2.0.0 Bye
"""

#: Where the original lab script departs from the RFCs (the lab view's note).
LAB_DIFFERENCES = (
    "The original lab script sent HELO, then AUTH LOGIN: AUTH needs EHLO (RFC 4954 §3). "
    "A greeting command, EHLO or HELO, must come before MAIL (RFC 5321 §4.1.4)."
)

Key = tuple[str, str, str]


def lab_trace() -> list[TraceStep]:
    """The lab's session stepped through the engine (no I/O): each step with the rows it took."""
    from .testing.stepping import SessionStepper

    step = SessionStepper(transcript=LAB_TRANSCRIPT, local_hostname="client.example", username="student",
                          password="secret", auth_mechanism="LOGIN", pipelining=False, loopback=True)
    step.session.sendmail("student@example.org", ["teacher@example.org"],
                          b"Subject: lab\r\n\r\nI love computer network!\r\n")
    step.session.quit()
    step.run()
    return step.trace


def wire_lines(step: TraceStep) -> list[str]:
    """A step as a student sees it on the wire: the server's reply (a 334 challenge decoded), then what
    the client wrote (a message's content summed up)."""
    lines = []
    challenge = ""  # a 334 challenge decoded ("Username:"), which says what the masked answer is
    if step.reply is not None:
        text = step.reply.lines[-1] if step.reply.lines else ""
        line = f"S: {step.reply.code} {text}".rstrip()
        if step.state_after == table.AUTH_RESPONSE and text:  # the table took it for a challenge
            with contextlib.suppress(binascii.Error, UnicodeDecodeError):  # a challenge that is not base64 text
                challenge = base64.b64decode(text, validate=True).decode("utf-8")
                line += f" ({challenge})"
        lines.append(line)
    sent = [part for part in step.sent.decode("utf-8", "replace").split("\r\n") if part]
    if step.state_after == table.CONTENT and len(sent) > 1:
        lines += ["C: the message", "C: ."]
    else:
        secret = {"username": "C: the user name, in base64", "password": "C: the password, in base64"}
        answer = secret.get(challenge.rstrip(":").lower())
        lines += [answer if answer and part == MASK.decode() else f"C: {part}" for part in sent]
    return lines


def lab_path() -> list[tuple[Key, list[str]]]:
    """The lab's steps in order: the edge each took (its last table row) and its words on the wire."""
    path = []
    for step in lab_trace():
        if not step.rows:
            continue
        row = table.TRANSITIONS[step.rows[-1]]
        path.append(((row.source, row.trigger, row.dest or row.source), wire_lines(step)))
    return path
