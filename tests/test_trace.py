"""The trace model's two serialisations: JSON lines and the S:/C: text, plus the annotated view."""

from __future__ import annotations

import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtp_fsm import ClientSession, SMTPClient
from smtp_fsm.console import annotated_text
from smtp_fsm.replies import Reply
from smtp_fsm.testing import LocalSMTPServer, SessionStepper, replay
from smtp_fsm.trace import MASK, TraceStep, TranscriptError, dump_jsonl, load_jsonl
from smtp_fsm.transcript import escape, load_transcript, parse_transcript, render_lines, to_text, unescape

MESSAGE = b"Subject: hi\r\n\r\nhello\r\n"


def stepped_trace() -> list[TraceStep]:
    """A short session, stepped by hand: greeting, EHLO, one pipelined message, QUIT."""
    step = SessionStepper(local_hostname="client.example")
    step.session.sendmail("a@example.org", ["b@example.net"], MESSAGE)
    step.session.quit()
    step.reply("220 mx.example ESMTP")
    step.reply("250-mx.example", "250 PIPELINING")
    step.reply("250 OK")
    step.reply("250 OK")
    step.reply("354 go ahead")
    step.reply("250 2.0.0 queued as 1")
    step.reply("221 bye")
    return step.trace


def test_jsonl_round_trip_through_a_file(tmp_path):
    steps = stepped_trace()
    path = tmp_path / "trace.jsonl"
    dump_jsonl(steps, path)
    assert load_jsonl(path) == steps
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == len(steps)
    assert set(records[0]) == {"state_before", "reply", "state_after", "sent", "events", "note", "rows", "answers",
                               "words"}
    assert records[0]["reply"] == {"code": 220, "lines": ["mx.example ESMTP"]}
    assert records[0]["sent"] == "EHLO client.example\r\n"


def test_jsonl_keeps_bytes_that_are_not_utf8_and_unicode_text():
    steps = [
        TraceStep("content", Reply(250, ("成功",)), "ready", b"\xff\xfe bin\r\n", ("MessageSent(...)",), "n"),
        TraceStep("ready", None, "envelope", "MAIL FROM:<用户@例子.广告>\r\n".encode(), (), "mail requested"),
    ]
    buffer = io.StringIO()
    dump_jsonl(steps, buffer)
    text = buffer.getvalue()
    assert "\\udcff" in text.splitlines()[0]  # escaped reversibly, the line stays valid UTF-8 JSON
    assert "例子" in text.splitlines()[1]  # readable when it is text
    assert load_jsonl(io.StringIO(text)) == steps


def test_jsonl_reports_the_bad_line():
    with pytest.raises(TranscriptError, match="line 2"):
        load_jsonl(io.StringIO('{"state_before": "a", "reply": null, "state_after": "b"}\n{nope\n'))


def test_text_of_a_session_reads_like_the_rfc():
    text = to_text(stepped_trace())
    assert text.splitlines()[:5] == [
        "S: 220 mx.example ESMTP",
        "C: EHLO client.example",
        "S: 250-mx.example",
        "S: 250 PIPELINING",
        "# mail requested",
    ]
    assert "C: MAIL FROM:<a@example.org>\nC: RCPT TO:<b@example.net>\nC: DATA\n" in text  # pipelined
    assert "C: Subject: hi\nC:\nC: hello\nC: .\n" in text


def test_text_round_trip_keeps_every_byte():
    steps = stepped_trace()
    transcript = parse_transcript(to_text(steps))
    assert transcript.server_bytes == b"".join(s.reply.to_bytes() for s in steps if s.reply)
    assert transcript.client_bytes == b"".join(s.sent for s in steps)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200))
def test_any_client_bytes_survive_the_text_form(data):
    text = "".join(line + "\n" for line in render_lines("C", data))
    assert parse_transcript("S: 220 x\n" + text).client_bytes == data


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=100))
def test_escape_round_trip(data):
    escaped = escape(data)
    assert "\n" not in escaped and "\r" not in escaped
    assert escaped == escaped.rstrip(" ")
    assert unescape(escaped) == data


def test_odd_lines_use_the_escaped_form():
    assert render_lines("C", b"bare\rCR\r\n") == ["C~ bare\\rCR\\r\\n"]
    assert render_lines("C", b"trailing blank \r\n") == ["C~ trailing blank \\r\\n"]
    assert render_lines("C", b"BDAT 3 LAST\r\nabc") == ["C: BDAT 3 LAST", "C~ abc"]
    assert render_lines("C", b"caf\xe9\r\n") == ["C~ caf\\xe9\\r\\n"]
    assert render_lines("C", "café\r\n".encode()) == ["C: café"]


def test_parse_an_rfc_style_transcript():
    transcript = parse_transcript(
        """
        # RFC 5321 appendix D.1, shortened; indented like the RFC
        S: 220 foo.com Simple Mail Transfer Service Ready
        C: EHLO bar.com
        S: 250-foo.com greets bar.com
        S: 250-8BITMIME
        S: 250 HELP

        C & S: <nothing happens here>
        C: QUIT
        S: 221 foo.com Service closing transmission channel
        S: <closes the connection>
        """
    )
    assert len(transcript) == 3
    first, second, third = transcript
    assert [chunk.step for chunk in transcript.chunks] == [1, 2, 3, 4]
    assert first.server_bytes == b"220 foo.com Simple Mail Transfer Service Ready\r\n"
    assert first.client_bytes == b"EHLO bar.com\r\n"
    assert second.chunks[0].data == b"250-foo.com greets bar.com\r\n250-8BITMIME\r\n250 HELP\r\n"
    assert second.client_bytes == b"QUIT\r\n"
    assert [chunk.close for chunk in third.chunks] == [False, True]
    assert transcript.chunks[0].lineno == 3


def test_parse_errors_name_the_line():
    with pytest.raises(TranscriptError, match="line 2"):
        parse_transcript("S: 220 hi\nX: what\n")
    with pytest.raises(TranscriptError, match="line 1"):
        parse_transcript("C~ bad \\q escape\n")


def test_load_transcript_from_a_file(tmp_path):
    path = tmp_path / "session.txt"
    path.write_text(to_text(stepped_trace()), encoding="utf-8")
    assert load_transcript(path).client_bytes.startswith(b"EHLO client.example\r\n")


def test_annotated_text_puts_the_state_beside_each_line():
    text = annotated_text(stepped_trace(), color=False)
    lines = text.splitlines()
    assert lines[0].split() == ["greeting", "S:", "220", "mx.example", "ESMTP"]
    assert lines[1].split()[:3] == ["->", "ehlo", "C:"]
    assert any(line.split()[:2] == ["->", "closed"] and "* the session is over: 221 to QUIT" in line for line in lines)
    assert "Closed(" not in text and "SessionReady(" not in text  # events in words, not reprs
    assert "\x1b[" not in text
    coloured = annotated_text(stepped_trace(), color=True)
    assert "\x1b[" in coloured
    assert coloured.count("\n") == text.count("\n")


def test_annotated_text_elides_long_content():
    step = SessionStepper(local_hostname="client.example")
    step.session.sendmail("a@example.org", ["b@example.net"], b"".join(b"line %d\r\n" % i for i in range(50)))
    step.reply("220 mx")
    step.reply("250 mx")
    step.reply("250 ok")
    step.reply("250 ok")
    step.reply("354 go")
    text = annotated_text(step.trace, max_lines=5)
    assert "more lines" in text and "line 40" not in text


def test_credentials_appear_only_masked(smtp_server_factory):
    server = smtp_server_factory(credentials={"alice": "s3cret-password"}, auth_require_tls=False)
    with SMTPClient(server.host, server.port, username="alice", password="s3cret-password",
                    auth_mechanism="PLAIN", trace=True, timeout=10) as client:
        client.sendmail("alice@example.org", ["bob@example.net"], MESSAGE)
    steps = client.trace
    buffer = io.StringIO()
    dump_jsonl(steps, buffer)
    for serialised in (buffer.getvalue(), to_text(steps), annotated_text(steps, color=True)):
        assert "s3cret" not in serialised
        assert "AGFsaWNlAHMzY3JldC1wYXNzd29yZA" not in serialised  # base64 of the PLAIN response
        assert MASK.decode() in serialised


def test_a_recorded_session_replays_as_a_test(smtp_server_factory):
    """Record against aiosmtpd with AUTH, save as text, replay with other credentials: MASK matches them."""
    server: LocalSMTPServer = smtp_server_factory(credentials={"alice": "pw"}, auth_require_tls=False,
                                                  pipelining=True)
    with SMTPClient(server.host, server.port, username="alice", password="pw", trace=True, timeout=10) as client:
        client.sendmail("alice@example.org", ["bob@example.net"], MESSAGE)
        client.noop()
    text = to_text(client.trace)
    assert "<credentials>" in text

    def work(session: ClientSession) -> None:
        session.sendmail("alice@example.org", ["bob@example.net"], MESSAGE)
        session.noop()
        session.quit()

    session = ClientSession(local_hostname="[127.0.0.1]", loopback=True, username="alice", password="other")
    result = replay(text, session, work)
    assert result.final_state == "closed"
    assert "auth" in result.states or "auth_response" in result.states
    assert [type(e).__name__ for e in result.events][-1] == "Closed"


def test_escape_keeps_unicode_line_breaks_apart_from_raw_bytes():
    # U+0085 (NEL) is the two bytes C2 85; the lone byte 85 is not UTF-8. Both must come back.
    for data in (b"\xc2\x85", b"\x85", b"a\xe2\x80\xa8b"):
        escaped = escape(data)
        assert "\x85" not in escaped and "\u2028" not in escaped
        assert unescape(escaped) == data


def test_the_engine_loads_only_the_small_recorder() -> None:
    import subprocess
    import sys

    code = ("import sys, smtp_fsm; s = smtp_fsm.ClientSession(local_hostname='c.example', trace=True); "
            "s.receive_data(b'220 mx\\r\\n'); "
            "print(sorted(m for m in sys.modules if m.startswith('smtp_fsm.')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert "smtp_fsm.trace" in loaded.stdout
    for heavy in ("smtp_fsm.transcript", "smtp_fsm.console", "smtp_fsm.cli", "smtp_fsm.testing"):
        assert f"'{heavy}'" not in loaded.stdout, heavy


def test_the_scripted_server_needs_the_transcript_not_the_engine() -> None:
    import ast
    from pathlib import Path

    import smtp_fsm.testing.scripted as scripted

    tree = ast.parse(Path(scripted.__file__).read_text(encoding="utf-8"))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert "transcript" in imported
    assert not imported & {"session", "_model", "replay", "protocol", "sync", "aio"}
