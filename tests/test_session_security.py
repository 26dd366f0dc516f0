"""DESIGN.md section 4, one rule at a time: each threat the engine must resist, as a sans-IO test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from email import policy
from email.message import EmailMessage, Message

import pytest
from sansio_helpers import CLIENT, GREETING, data_terminators, drive_to, ehlo, ready, reply, stepper

from smtp_fsm import (
    Event,
    LocalProtocolError,
    MessageSent,
    RemoteProtocolError,
    ServerDisconnected,
    StartTLS,
    TLSUnavailable,
)
from smtp_fsm.replies import MAX_LINE, MAX_LINES
from smtp_fsm.session import bytes_buffered
from smtp_fsm.testing import SessionStepper

OK = b"250 ok\r\n"
GO = b"354 go ahead\r\n"
QUEUED = b"250 queued as Q1\r\n"
AUTH_OR_MAIL = (b"AUTH", b"MAIL", b"RCPT", b"DATA", b"BDAT")


def _assert_usable(h: SessionStepper) -> None:
    """A valid message queued now goes out in full (the session survived the refused request)."""
    ticket = h.session.sendmail("a@x.org", ["b@y.org"], b"valid\r\n")
    step = h.pending()
    if h.session.capabilities.pipelining:
        assert step.sent == b"MAIL FROM:<a@x.org>\r\nRCPT TO:<b@y.org>\r\nDATA\r\n"
        assert h.feed(OK + OK + GO).sent == b"valid\r\n.\r\n"
    else:
        assert step.sent == b"MAIL FROM:<a@x.org>\r\n"
        assert h.feed(OK).sent == b"RCPT TO:<b@y.org>\r\n"
        assert h.feed(OK).sent == b"DATA\r\n"
        assert h.feed(GO).sent == b"valid\r\n.\r\n"
    assert h.feed(QUEUED).results[ticket].ok


# --- STARTTLS stripping (CVE-2016-0772) ---------------------------------------------


@pytest.mark.parametrize(
    "server",
    [
        [ehlo("PIPELINING", "AUTH PLAIN LOGIN")],  # STARTTLS stripped from the EHLO answer
        [ehlo("STARTTLS", "AUTH PLAIN"), reply(454, "4.7.0 TLS not available")],
        [ehlo("STARTTLS", "AUTH PLAIN"), reply(502, "5.5.1 unrecognised")],
        [reply(502, "no EHLO"), reply(250, "mx.example")],
    ],
)
def test_stripping_with_tls_required_never_produces_auth_or_mail(server: list[bytes]) -> None:
    h = stepper(starttls="required", username="user", password="secret", allow_insecure_auth=True)
    h.session.sendmail("a@x.org", ["b@y.org"], b"hi\r\n")
    h.pending()
    wire = h.feed(GREETING).sent
    errors = []
    for data in server:
        if h.state in ("closed", "failed"):
            break
        step = h.feed(data)
        wire += step.sent
        errors += step.errors
    wire += h.feed(reply(221, "bye")).sent if h.state == "quit" else b""
    assert [type(e) for e in errors] == [TLSUnavailable]
    assert not any(verb in wire for verb in AUTH_OR_MAIL), wire
    assert wire.endswith(b"QUIT\r\n")


def test_stripping_with_opportunistic_tls_never_sends_credentials_in_clear() -> None:
    h = stepper(username="user", password="secret")
    h.feed(GREETING)
    step = h.feed(ehlo("AUTH PLAIN LOGIN"))
    assert step.sent == b"QUIT\r\n"
    assert isinstance(step.error, LocalProtocolError)


# --- STARTTLS response injection (NO STARTTLS, GHSA-vxj7-4xrp-5vr4) ----------------


def test_starttls_alone_in_its_write() -> None:
    h = stepper()
    h.session.sendmail("a@x.org", ["b@y.org"], b"hi\r\n")
    h.pending()
    h.session.noop()
    h.pending()
    h.feed(GREETING)
    assert h.feed(ehlo("PIPELINING", "STARTTLS")).sent == b"STARTTLS\r\n"


def test_reply_injected_with_the_220_is_refused() -> None:
    h = drive_to("starttls")
    step = h.feed(b"220 2.0.0 ready\r\n250-mx.example\r\n250 AUTH PLAIN\r\n")
    assert isinstance(step.error, RemoteProtocolError)
    assert step.sent == b"" and step.state == "failed"
    assert step.of(StartTLS) == ()  # the caller must not be told to start the handshake


def test_partial_bytes_after_the_220_are_refused() -> None:
    h = drive_to("starttls")
    step = h.feed(b"220 ready\r\n25")
    assert isinstance(step.error, RemoteProtocolError) and step.sent == b""


def test_bytes_before_the_handshake_in_a_later_read_are_refused() -> None:
    h = drive_to("tls_handshake")
    step = h.feed(b"250 injected\r\n")
    assert isinstance(step.error, RemoteProtocolError) and step.sent == b""


def test_capabilities_and_auth_list_forgotten_after_tls() -> None:
    h = stepper(username="user", password="secret", starttls="required")
    h.feed(GREETING)
    h.feed(ehlo("STARTTLS", "AUTH PLAIN LOGIN CRAM-MD5", "PIPELINING", "CHUNKING"))
    h.feed(reply(220, "go"))
    h.session.tls_established()
    assert h.pending().sent == f"EHLO {CLIENT}\r\n".encode()
    assert dict(h.session.capabilities.keywords) == {}
    # The second EHLO offers no AUTH: the first list must not be used.
    step = h.feed(ehlo("SIZE 1000"))
    assert b"AUTH" not in step.sent
    assert step.sent == b"QUIT\r\n" and step.errors


# --- unsolicited replies (RFC 2920 §3.1) -------------------------------------------


def test_reply_with_nothing_in_flight_is_an_error() -> None:
    h = ready()
    step = h.feed(b"250 surprise\r\n")
    assert isinstance(step.error, RemoteProtocolError) and step.sent == b""


def test_extra_reply_after_a_group_is_an_error() -> None:
    h = ready("PIPELINING")
    h.session.sendmail("a@x.org", ["b@y.org"], b"hi\r\n")
    h.pending()
    h.feed(OK + OK + GO)
    step = h.feed(QUEUED + b"250 one too many\r\n")
    assert isinstance(step.error, RemoteProtocolError)


def test_reply_to_a_command_not_yet_written_is_unsolicited() -> None:
    # Without PIPELINING only MAIL is in flight: a second reply in the same read answers nothing.
    h = ready()
    h.session.sendmail("a@x.org", ["b@y.org"], b"hi\r\n")
    h.pending()
    step = h.feed(OK + OK + GO)
    assert isinstance(step.error, RemoteProtocolError)
    assert b"hi\r\n" not in step.sent


def test_reply_to_content_not_yet_written_is_unsolicited() -> None:
    h = ready("PIPELINING")
    h.session.sendmail("a@x.org", ["b@y.org"], b"hi\r\n")
    h.pending()
    step = h.feed(OK + OK + GO + QUEUED)
    assert isinstance(step.error, RemoteProtocolError)


# --- command injection (bpo-43124, GHSA-c7w3) --------------------------------------

BAD_ADDRESSES = [
    "a@x.org\r\nRCPT TO:<evil@y.org>",
    "a@x.org\nDATA",
    "a@x.org\rRSET",
    "a\x00@x.org",
    "a\x7f@x.org",
    "a\x1b@x.org",
    "a\t@x.org",
    "a>@x.org",
    "<a@x.org",
    "a@x.org> NOTIFY=NEVER",
]


@pytest.mark.parametrize("bad", BAD_ADDRESSES)
@pytest.mark.parametrize("where", ["sender", "recipient"])
@pytest.mark.parametrize("pipelined", [False, True])
def test_bad_address_raises_writes_nothing_and_session_stays_usable(bad: str, where: str, pipelined: bool) -> None:
    h = ready(*(("PIPELINING",) if pipelined else ()))
    sender, recipient = (bad, "b@y.org") if where == "sender" else ("a@x.org", bad)
    with pytest.raises(LocalProtocolError):
        h.session.sendmail(sender, [recipient], b"hi\r\n")
    step = h.pending()
    assert step.sent == b"" and step.of(Event) == () and step.state == "ready"
    _assert_usable(h)


@pytest.mark.parametrize("bad", BAD_ADDRESSES[:4])
def test_bad_address_queued_before_ehlo_raises_at_once(bad: str) -> None:
    h = stepper()
    with pytest.raises(LocalProtocolError):
        h.session.sendmail("a@x.org", [bad], b"hi\r\n")
    h.feed(GREETING)
    assert h.feed(ehlo()).sent == b""


@pytest.mark.parametrize(
    "options",
    [
        {"mail_options": ["SIZE=1\r\nRCPT TO:<evil@y.org>"]},
        {"mail_options": ["X-EVIL=a b"]},
        {"mail_options": ["BAD\nKEY"]},
        {"rcpt_options": ["NOTIFY=NEVER\r\nDATA"]},
        {"rcpt_options": ["X=\x00"]},
    ],
)
def test_esmtp_parameter_injection_raises(options: dict[str, list[str]]) -> None:
    h = ready("DSN")
    with pytest.raises(LocalProtocolError):
        h.session.sendmail("a@x.org", ["b@y.org"], b"hi\r\n", **options)  # type: ignore[arg-type]
    assert h.pending().sent == b""
    _assert_usable(h)


def test_dsn_values_are_xtext_not_injected() -> None:
    h = ready("DSN")
    h.session.sendmail("a@x.org", ["b+x@y.org"], b"hi\r\n", notify=["FAILURE"], envid="id=1 \r\nRSET")
    step = h.pending()
    assert step.sent == b"MAIL FROM:<a@x.org> ENVID=id+3D1+20+0D+0ARSET\r\n"
    assert h.feed(OK).sent == b"RCPT TO:<b+x@y.org> NOTIFY=FAILURE ORCPT=rfc822;b+2Bx@y.org\r\n"


@pytest.mark.parametrize("name", ["x\r\nMAIL FROM:<a@b>", "x\n", "x\x00", "x\x7f", "x y"])
def test_ehlo_name_injection_raises_before_anything(name: str) -> None:
    with pytest.raises(LocalProtocolError):
        stepper(local_hostname=name)


# --- SMTP smuggling (CVE-2023-51764/5/6) ---------------------------------------------

SMUGGLING = [
    b"Subject: x\r\n\r\nhello\n.\nMAIL FROM:<evil@x.org>\n",
    b"Subject: x\r\n\r\nhello\r.\rMAIL FROM:<evil@x.org>\r",
    b"Subject: x\r\n\r\nhello\r\n.\r\nMAIL FROM:<evil@x.org>\r\n",
    b"Subject: x\r\n\r\nhello\n.\r\nMAIL FROM:<evil@x.org>\r\n",
    b"Subject: x\r\n\r\nhello\r.\r\nRSET\r\n",
    b"Subject: x\r\n\r\nhello\r\n.\nQUIT\n",
    b"Subject: x\r\n\r\n.\r\n",
    b".\r\n",
    b"no final newline\r\n.",
]


@pytest.mark.parametrize("payload", SMUGGLING)
def test_smuggled_end_of_data_is_neutralised(payload: bytes) -> None:
    h = ready("PIPELINING")
    h.session.sendmail("a@x.org", ["b@y.org"], payload)
    h.pending()
    wire = h.feed(OK + OK + GO).sent
    assert data_terminators(b"\r\n" + wire) == 1  # the CRLF before the data is DATA's own
    assert wire.endswith(b"\r\n.\r\n")
    assert b"\r" not in wire.replace(b"\r\n", b"") and b"\n" not in wire.replace(b"\r\n", b"")


@pytest.mark.parametrize("payload", SMUGGLING)
def test_smuggling_payload_in_bdat_is_normalised_and_unstuffed(payload: bytes) -> None:
    h = ready("PIPELINING", "CHUNKING")
    h.session.sendmail("a@x.org", ["b@y.org"], payload)
    step = h.pending()
    _, _, body = step.sent.partition(b"BDAT ")
    size, _, chunk = body.partition(b" LAST\r\n")
    assert int(size) == len(chunk)
    assert b"\r" not in chunk.replace(b"\r\n", b"") and b"\n" not in chunk.replace(b"\r\n", b"")
    assert chunk.endswith(b"\r\n")


@pytest.mark.parametrize("queued", ["ready", "before EHLO's reply"])
@pytest.mark.parametrize("extensions", [("PIPELINING",), ("PIPELINING", "CHUNKING")])
@pytest.mark.parametrize("kind", [bytearray, memoryview])
def test_a_mutable_buffer_is_sent_as_it_was_when_queued(kind: type, extensions: tuple[str, ...], queued: str) -> None:
    """The content waits for its 354 (or, queued before the capabilities are known, for its BDAT):
    a buffer the caller changes after sendmail must not reach the wire, unchecked, in place of
    what was checked."""
    checked = b"Subject: hi\r\n\r\nhello there, a line long enough\r\n"
    changed = b"Subject: hi\r\n\r\nx\n.\nMAIL FROM:<evil@x.org>".ljust(len(checked) - 2, b"x") + b"\r\n"
    buffer = bytearray(checked)
    if queued == "ready":
        h = ready(*extensions)
    else:
        h = stepper()
        h.feed(GREETING)
    h.session.sendmail("a@x.org", ["b@y.org"], buffer if kind is bytearray else memoryview(buffer))
    buffer[:] = changed  # (the same size: a view would not let it change)
    wire = h.pending().sent if queued == "ready" else h.feed(ehlo(*extensions)).sent
    if "CHUNKING" not in extensions:
        wire = h.feed(OK + OK + GO).sent
    assert checked in wire and b"evil" not in wire


@pytest.mark.parametrize("msg", [42, None, ["a list"]])
def test_a_message_of_another_type_raises_before_a_byte_is_written(msg: object) -> None:
    h = ready("PIPELINING")
    with pytest.raises(TypeError, match=f"not {type(msg).__name__}"):
        h.session.sendmail("a@x.org", ["b@y.org"], msg)  # type: ignore[arg-type]
    assert h.pending().sent == b""


# --- header injection (CVE-2024-6923) ------------------------------------------------


def _compat32(subject: object) -> Message:
    msg = Message(policy=policy.compat32)
    msg["From"] = "a@x.org"
    msg["To"] = "b@y.org"
    msg["Subject"] = subject  # type: ignore[assignment]
    msg.set_payload("body\n")
    return msg


@pytest.mark.parametrize("value", ["x\r\nBcc: evil@y.org", "x\nBcc: evil@y.org", "x\r\n\r\nnew body"])
def test_header_injection_raises_before_anything_is_queued(value: str) -> None:
    h = ready()
    with pytest.raises(LocalProtocolError):
        h.session.send_message(_compat32(value))
    assert h.pending().sent == b""
    _assert_usable(h)


def test_bcc_and_resent_bcc_never_sent_but_receive_the_message() -> None:
    h = ready("PIPELINING")
    msg = EmailMessage()
    msg["From"] = "a@x.org"
    msg["To"] = "b@y.org"
    msg["Bcc"] = "hidden@y.org"
    msg["Subject"] = "s"
    msg.set_content("body\n")
    h.session.send_message(msg)
    step = h.pending()
    assert b"RCPT TO:<hidden@y.org>" in step.sent
    content = h.feed(OK + OK + OK + GO).sent
    assert b"hidden@y.org" not in content and b"Bcc" not in content
    resent = EmailMessage()
    resent["From"] = "a@x.org"
    resent["To"] = "b@y.org"
    resent["Resent-Date"] = "Mon, 01 Jan 2024 00:00:00 +0000"
    resent["Resent-From"] = "r@x.org"
    resent["Resent-To"] = "rt@y.org"
    resent["Resent-Bcc"] = "rb@y.org"
    resent.set_content("body\n")
    h.feed(QUEUED)
    h.session.send_message(resent)
    step = h.pending()
    assert step.sent == b"MAIL FROM:<r@x.org>\r\nRCPT TO:<rt@y.org>\r\nRCPT TO:<rb@y.org>\r\nDATA\r\n"
    content = h.feed(OK + OK + OK + GO).sent
    assert b"rb@y.org" not in content and b"Resent-Bcc" not in content


def test_overlong_line_in_raw_payload_raises_and_session_stays_usable() -> None:
    h = ready()
    with pytest.raises(LocalProtocolError):
        h.session.sendmail("a@x.org", ["b@y.org"], b"ok\r\n" + b"x" * 999 + b"\r\n")
    assert h.pending().sent == b""
    _assert_usable(h)


# --- credentials in clear ------------------------------------------------------------

MECHANISMS = {
    "PLAIN": {"password": "secret"},
    "LOGIN": {"password": "secret"},
    "CRAM-MD5": {"password": "secret"},
    "XOAUTH2": {"oauth_token": "tok"},
}


@pytest.mark.parametrize("mechanism", list(MECHANISMS))
def test_auth_in_clear_to_remote_host_raises_before_a_byte(mechanism: str) -> None:
    h = stepper(username="user", auth_mechanism=mechanism, **MECHANISMS[mechanism])
    h.feed(GREETING)
    step = h.feed(ehlo(f"AUTH {mechanism}"))
    assert b"AUTH" not in step.sent and step.sent == b"QUIT\r\n"
    assert isinstance(step.error, LocalProtocolError)
    assert "secret" not in str(step.error) and "tok" not in str(step.error)


@pytest.mark.parametrize("mechanism", list(MECHANISMS))
@pytest.mark.parametrize("allowed_by", ["loopback", "encrypted", "allow_insecure_auth"])
def test_auth_allowed_when_safe_or_explicitly_allowed(mechanism: str, allowed_by: str) -> None:
    h = stepper(username="user", auth_mechanism=mechanism, **{allowed_by: True}, **MECHANISMS[mechanism])
    h.feed(GREETING)
    step = h.feed(ehlo(f"AUTH {mechanism}"))
    assert step.sent.startswith(f"AUTH {mechanism}".encode()) and step.errors == ()


# --- unbounded input -----------------------------------------------------------------


def test_overlong_reply_line_is_a_remote_error() -> None:
    h = drive_to("ehlo")
    step = h.feed(b"250-" + b"x" * (MAX_LINE + 10) + b"\r\n")
    assert isinstance(step.error, RemoteProtocolError) and step.state == "failed"


def test_endless_line_keeps_memory_bounded() -> None:
    h = drive_to("ehlo")
    h.feed(b"250-")
    errors = []
    for _ in range(1000):  # 1 MB offered at most
        if h.state == "failed":
            break
        step = h.feed(b"y" * 1000)
        errors += step.errors
        assert bytes_buffered(h.session) <= MAX_LINE + 4
    assert [type(e) for e in errors] == [RemoteProtocolError]


def test_endless_multiline_reply_is_refused() -> None:
    h = drive_to("ehlo")
    errors = []
    for _ in range(MAX_LINES + 10):
        if h.state == "failed":
            break
        errors += h.feed(b"250-KEYWORD\r\n").errors
    assert [type(e) for e in errors] == [RemoteProtocolError]
    assert bytes_buffered(h.session) <= MAX_LINES * MAX_LINE


@pytest.mark.parametrize("garbage", [b"hello\r\n", b"2500 x\r\n", b"250 ok\n", b"\x00\x01\r\n"])
def test_garbage_is_a_remote_error(garbage: bytes) -> None:
    h = drive_to("ehlo")
    step = h.feed(garbage)
    assert isinstance(step.error, RemoteProtocolError) and step.sent == b""


# --- 421 at any time -----------------------------------------------------------------


def test_421_mid_content_reports_and_sends_nothing_more() -> None:
    h = ready("PIPELINING")
    h.session.sendmail("a@x.org", ["b@y.org"], b"hi\r\n")
    h.pending()
    h.session.sendmail("a@x.org", ["c@y.org"], b"second\r\n")
    h.pending()
    h.feed(OK + OK + GO)
    step = h.feed(b"421 4.4.2 timeout\r\n")
    assert isinstance(step.error, ServerDisconnected) and step.sent == b""
    # Nothing claimed as delivered: the first message's content went out (uncertain), the
    # second's never did (not sent); both carry the 421 as their error.
    fates = [(event.result.outcome, event.result.error) for event in step.of(MessageSent)]
    assert fates == [("uncertain", step.error), ("not_sent", step.error)]


# --- fragmentation ---------------------------------------------------------------------

Chunker = Callable[[bytes], Iterator[bytes]]


def _whole(data: bytes) -> Iterator[bytes]:
    yield data


def _bytewise(data: bytes) -> Iterator[bytes]:
    for index in range(len(data)):
        yield data[index : index + 1]


def _threes(data: bytes) -> Iterator[bytes]:
    for index in range(0, len(data), 3):
        yield data[index : index + 3]


SCRIPT = [
    GREETING,
    ehlo("STARTTLS", "PIPELINING"),
    reply(220, "go ahead"),
    ehlo("PIPELINING", "AUTH LOGIN", "8BITMIME", "SIZE 100000", "ENHANCEDSTATUSCODES"),
    reply(334, "VXNlcm5hbWU6"),
    reply(334, "UGFzc3dvcmQ6"),
    reply(235, "2.7.0 ok"),
    OK + OK + b"550-5.1.1 no such\r\n550 5.1.1 user\r\n" + GO,
    QUEUED + OK + OK + GO,
    QUEUED,
    reply(221, "bye"),
]


def _run(chunker: Chunker) -> list[tuple[bytes, tuple[str, ...], tuple[str, ...], str]]:
    h = stepper(username="user", password="secret", starttls="required")
    h.session.send_many([("a@x.org", ["b@y.org", "c@y.org"], "one\r\n"), ("a@x.org", ["d@y.org"], "二\r\n")])
    h.pending()
    h.session.quit()
    h.pending()
    log = []
    for turn in SCRIPT:
        sent, events, errors = b"", [], []
        for piece in chunker(turn):
            step = h.feed(piece)
            sent += step.sent
            events += [repr(e) for e in step.of(Event)]
            errors += [repr(e) for e in step.errors]
            if step.of(StartTLS):
                h.session.tls_established()
                step = h.pending()
                sent += step.sent
                events += [repr(e) for e in step.of(Event)]
        log.append((sent, tuple(events), tuple(errors), h.state))
    return log


def test_fragmentation_gives_the_same_events_states_and_output() -> None:
    whole = _run(_whole)
    assert whole[-1][3] == "closed" and all(not errors for _, _, errors, _ in whole)
    assert _run(_bytewise) == whole
    assert _run(_threes) == whole
