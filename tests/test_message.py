"""Messages to wire payloads: envelope from headers, Bcc stripping, CRLF, dot-stuffing, header injection, 8-bit."""

from __future__ import annotations

import email
from email import policy
from email.header import Header
from email.message import EmailMessage, Message

import pytest
from lab import LAB_MESSAGE, LAB_NORMALISED

from smtp_fsm import LocalProtocolError
from smtp_fsm.message import (
    MAX_TEXT_LINE,
    check_line_length,
    dot_stuff,
    envelope_from_headers,
    normalize_line_endings,
    payload_from_bytes,
    payload_from_message,
    serialise,
)


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        (b"", b""),
        (b"x", b"x\r\n"),
        (b"a\r\n", b"a\r\n"),
        (b"a\nb\n", b"a\r\nb\r\n"),
        (b"a\rb\r", b"a\r\nb\r\n"),
        (b"a\r\r\nb", b"a\r\n\r\nb\r\n"),
        (b"a\n\rb", b"a\r\n\r\nb\r\n"),
        (b"a\r\n\nb", b"a\r\n\r\nb\r\n"),
    ],
)
def test_normalize_line_endings(raw: bytes, normal: bytes) -> None:
    assert normalize_line_endings(raw) == normal


def test_lab_message_is_normalised() -> None:
    assert payload_from_bytes(LAB_MESSAGE).content == LAB_NORMALISED


@pytest.mark.parametrize(
    ("content", "stuffed"),
    [
        (b"", b".\r\n"),
        (b"a\r\n", b"a\r\n.\r\n"),
        (b".\r\n", b"..\r\n.\r\n"),
        (b".a\r\n..b\r\nc.\r\n", b"..a\r\n...b\r\nc.\r\n.\r\n"),
        (b"x\r\n.\r\ny\r\n", b"x\r\n..\r\ny\r\n.\r\n"),
    ],
)
def test_dot_stuff(content: bytes, stuffed: bytes) -> None:
    assert dot_stuff(content) == stuffed


@pytest.mark.parametrize("body", [b"a\n.\nb", b"a\r.\rb", b"a\r\n.\r\nb", b"a\n.\r\nb", b"a\r.\nb", b".\n", b"x\n."])
def test_smuggling_payloads_end_data_once(body: bytes) -> None:
    wire = dot_stuff(payload_from_bytes(body).content)
    assert wire.count(b"\r\n.\r\n") + (1 if wire.startswith(b".\r\n") else 0) == 1
    assert wire.endswith(b"\r\n.\r\n")
    assert b"\r" not in wire.replace(b"\r\n", b"") and b"\n" not in wire.replace(b"\r\n", b"")


def test_line_length_limit_in_raw_payload() -> None:
    payload_from_bytes(b"x" * MAX_TEXT_LINE + b"\r\n")
    with pytest.raises(LocalProtocolError):
        payload_from_bytes(b"ok\r\n" + b"x" * (MAX_TEXT_LINE + 1) + b"\r\nok\r\n")
    with pytest.raises(LocalProtocolError):
        check_line_length(b"y" * (MAX_TEXT_LINE + 1))


def test_payload_eight_bit_flag() -> None:
    assert not payload_from_bytes(b"ascii\r\n").eight_bit
    assert payload_from_bytes("你好\n").eight_bit
    assert payload_from_bytes("你好\n").content == "你好\r\n".encode()


def _message() -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Alice <a@x.org>"
    msg["To"] = "b@y.org, Carol <c@y.org>"
    msg["Cc"] = "d@y.org"
    msg["Bcc"] = "hidden@y.org"
    msg["Subject"] = "hello"
    msg.set_content("hi\n")
    return msg


def test_envelope_from_headers_includes_bcc() -> None:
    assert envelope_from_headers(_message()) == ("a@x.org", ["b@y.org", "c@y.org", "hidden@y.org", "d@y.org"])


def test_sender_header_wins_over_from() -> None:
    msg = _message()
    msg["Sender"] = "secretary@x.org"
    assert envelope_from_headers(msg)[0] == "secretary@x.org"


def test_resent_headers_give_the_envelope() -> None:
    msg = _message()
    msg["Resent-Date"] = "Mon, 01 Jan 2024 00:00:00 +0000"
    msg["Resent-From"] = "r@x.org"
    msg["Resent-To"] = "rt@y.org"
    msg["Resent-Bcc"] = "rb@y.org"
    assert envelope_from_headers(msg) == ("r@x.org", ["rt@y.org", "rb@y.org"])


def test_two_resent_blocks_are_ambiguous() -> None:
    msg = _message()
    msg["Resent-Date"] = "Mon, 01 Jan 2024 00:00:00 +0000"
    msg["Resent-Date"] = "Tue, 02 Jan 2024 00:00:00 +0000"
    with pytest.raises(LocalProtocolError):
        envelope_from_headers(msg)


def test_bcc_and_resent_bcc_are_stripped_and_the_callers_message_untouched() -> None:
    msg = _message()
    msg["Resent-Bcc"] = "rb@y.org"
    wire = serialise(msg)
    assert b"hidden@y.org" not in wire and b"rb@y.org" not in wire
    assert b"\r\nBcc:" not in wire and not wire.startswith(b"Bcc:") and b"Resent-Bcc" not in wire
    assert msg["Bcc"] == "hidden@y.org" and msg["Resent-Bcc"] == "rb@y.org"


def test_serialise_is_crlf_with_smtp_policy() -> None:
    wire = serialise(_message())
    assert wire.startswith(b"From: Alice <a@x.org>\r\nTo: b@y.org, Carol <c@y.org>\r\n")
    assert b"\r\n\r\nhi\r\n" in wire
    assert b"\n" not in wire.replace(b"\r\n", b"")


def test_email_message_refuses_crlf_header_itself() -> None:
    msg = EmailMessage()
    with pytest.raises((ValueError, LocalProtocolError)):
        msg["Subject"] = "x\r\nBcc: evil@y.org"


def _compat32(subject: object) -> Message:
    msg = Message(policy=policy.compat32)
    msg["From"] = "a@x.org"
    msg["To"] = "b@y.org"
    msg["Subject"] = subject  # type: ignore[assignment]
    msg.set_payload("body\n")
    return msg


@pytest.mark.parametrize(
    "value",
    [
        "x\r\nBcc: evil@y.org",
        "x\nBcc: evil@y.org",
        "x\rBcc: evil@y.org",
        "x\r\n\r\ninjected body",
        "x\r\n \r\nBcc: e@y",
    ],
)
def test_header_injection_in_raw_value_is_a_local_error(value: str) -> None:
    with pytest.raises(LocalProtocolError):
        serialise(_compat32(value))


@pytest.mark.parametrize("value", ["x\r\nBcc: evil@y.org", "x\nBcc: evil@y.org"])
def test_header_injection_through_header_object_is_a_local_error(value: str) -> None:
    with pytest.raises(LocalProtocolError):
        serialise(_compat32(Header(value)))


def test_header_object_without_injection_serialises() -> None:
    wire = serialise(_compat32(Header("你好 hello", "utf-8")))
    assert b"Subject: =?utf-8?" in wire
    assert wire.endswith(b"\r\n\r\nbody\r\n")


def test_parsed_message_with_folded_header_serialises() -> None:
    # email.message_from_string uses compat32 and keeps the folding (CRLF + white space) in the value.
    msg = email.message_from_string("From: a@x.org\nTo: b@y.org\nSubject: folded\n  continued\n\nbody\n")
    wire = serialise(msg)
    assert b"Subject: folded" in wire and b"continued" in wire
    assert wire.endswith(b"\r\n\r\nbody\r\n")


def test_header_name_injection_is_refused() -> None:
    msg = Message(policy=policy.compat32)
    msg["From"] = "a@x.org"
    msg["X-Evil\r\nBcc"] = "evil@y.org"
    msg.set_payload("body\n")
    with pytest.raises(LocalProtocolError):
        serialise(msg)


def test_chinese_message_is_eight_bit_and_seven_bit_on_request() -> None:
    msg = EmailMessage()
    msg["From"] = "张三 <a@x.org>"
    msg["To"] = "b@y.org"
    msg["Subject"] = "你好"
    msg.set_content("你好，世界\n")
    payload = payload_from_message(msg)
    assert payload.eight_bit
    assert "你好，世界".encode() in payload.content
    # no 8BITMIME and no SMTPUTF8: re-serialised 7-bit clean
    seven = payload.for_server(False, False)
    assert not seven.eight_bit and seven.content.isascii()
    assert payload.for_server(True, False) is payload


def test_raw_eight_bit_without_8bitmime_is_refused() -> None:
    with pytest.raises(LocalProtocolError):
        payload_from_bytes("你好\r\n").for_server(False, False)
    assert payload_from_bytes("你好\r\n").for_server(True, False).eight_bit


def test_size_counts_normalised_unstuffed_octets() -> None:
    payload = payload_from_bytes(b".a\nb")
    assert payload.size == len(b".a\r\nb\r\n")


@pytest.mark.parametrize("length", [997, 998, 999, 1000, 1999, 2500])
@pytest.mark.parametrize("before", [b"", b"a\r\n", b"a" * 500 + b"\r\n", (b"b" * 70 + b"\r\n") * 40])
@pytest.mark.parametrize("after", [b"", b"tail\r\n", (b"c" * 900 + b"\r\n") * 3])
def test_line_length_limit_exactly_at_998_anywhere(length: int, before: bytes, after: bytes) -> None:
    content = before + b"x" * length + b"\r\n" + after
    if length > 998:
        with pytest.raises(LocalProtocolError, match="998"):
            check_line_length(content)
    else:
        check_line_length(content)
