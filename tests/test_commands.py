"""Command encoding: EHLO names, addresses, ESMTP parameters, xtext; nothing unsafe is ever encoded."""

from __future__ import annotations

import pytest

from smtp_fsm import LocalProtocolError
from smtp_fsm.addresses import encode_address
from smtp_fsm.commands import (
    MAX_COMMAND_LINE,
    check_ehlo_name,
    check_no_controls,
    command_line,
    format_params,
    mail_from,
    rcpt_to,
    xtext,
)

CONTROLS = ["\r", "\n", "\r\n", "\x00", "\x01", "\t", "\x1b", "\x1f", "\x7f"]


@pytest.mark.parametrize("name", ["client.example", "mail-1.example.org", "[127.0.0.1]", "[IPv6:::1]", "localhost"])
def test_valid_ehlo_names(name: str) -> None:
    assert check_ehlo_name(name) == name


@pytest.mark.parametrize("control", CONTROLS)
def test_controls_in_ehlo_name_are_refused(control: str) -> None:
    with pytest.raises(LocalProtocolError):
        check_ehlo_name(f"client{control}.example")


@pytest.mark.parametrize("name", ["", "two words", "<client>", "例子.广告", "[unclosed", "a]b["])
def test_malformed_ehlo_names_are_refused(name: str) -> None:
    with pytest.raises(LocalProtocolError):
        check_ehlo_name(name)


def test_ascii_address_goes_as_is() -> None:
    assert encode_address("user@example.org", smtputf8=False) == ("user@example.org", False)


def test_null_sender_only_when_allowed() -> None:
    assert encode_address("", smtputf8=False, allow_null=True) == ("", False)
    with pytest.raises(LocalProtocolError):
        encode_address("", smtputf8=False)


@pytest.mark.parametrize("control", CONTROLS)
def test_controls_in_address_are_refused(control: str) -> None:
    with pytest.raises(LocalProtocolError):
        encode_address(f"user{control}@example.org", smtputf8=True)


@pytest.mark.parametrize("address", ["us<er@example.org", "user>@example.org", "user@example.org> SIZE=1", "<a@b>"])
def test_angle_brackets_in_address_are_refused(address: str) -> None:
    with pytest.raises(LocalProtocolError):
        encode_address(address, smtputf8=True)


def test_utf8_address_with_smtputf8() -> None:
    assert encode_address("用户@例子.广告", smtputf8=True) == ("用户@例子.广告", True)


def test_utf8_local_part_without_smtputf8_is_refused() -> None:
    with pytest.raises(LocalProtocolError, match="SMTPUTF8"):
        encode_address("用户@例子.广告", smtputf8=False)


def test_idn_domain_goes_as_a_labels_without_smtputf8() -> None:
    assert encode_address("user@例子.广告", smtputf8=False) == ("user@xn--fsqu00a.xn--4rr70v", False)


def test_idn_domain_stays_utf8_with_smtputf8() -> None:
    assert encode_address("user@例子.广告", smtputf8=True) == ("user@例子.广告", True)


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        ("plain", "plain"),
        ("a+b", "a+2Bb"),
        ("a=b", "a+3Db"),
        ("a b", "a+20b"),
        ("rfc822;user@example.org", "rfc822;user@example.org"),
        ("é", "+C3+A9"),
        ("\r\n", "+0D+0A"),
        ("~!", "~!"),
        ("\x7f", "+7F"),
    ],
)
def test_xtext(value: str, encoded: str) -> None:
    # RFC 3461 §4: xchar is "!".."~" except "+" and "="; everything else is "+" HEXCHAR HEXCHAR (upper case).
    assert xtext(value) == encoded


def test_format_params() -> None:
    assert format_params({"SIZE": "1234", "BODY": "8BITMIME", "SMTPUTF8": None}) == " SIZE=1234 BODY=8BITMIME SMTPUTF8"
    assert format_params({}) == ""


@pytest.mark.parametrize(
    "params",
    [
        {"SIZE": "1\r\nRCPT TO:<x@y>"},
        {"SIZE": "1 2"},
        {"SIZE": "a=b"},
        {"SIZE": ""},
        {"BAD KEY": None},
        {"-LEADING": None},
        {"KEY\r\n": None},
        {"ENVID": "\x00"},
    ],
)
def test_invalid_params_are_refused(params: dict[str, str | None]) -> None:
    with pytest.raises(LocalProtocolError):
        format_params(params)


def test_command_lines() -> None:
    assert command_line("EHLO", "client.example") == b"EHLO client.example\r\n"
    assert command_line("QUIT") == b"QUIT\r\n"
    assert mail_from("") == b"MAIL FROM:<>\r\n"
    assert mail_from("a@x.org", " SIZE=10") == b"MAIL FROM:<a@x.org> SIZE=10\r\n"
    assert rcpt_to("b@y.org", " NOTIFY=NEVER") == b"RCPT TO:<b@y.org> NOTIFY=NEVER\r\n"
    assert rcpt_to("用户@例子.广告") == "RCPT TO:<用户@例子.广告>\r\n".encode()


@pytest.mark.parametrize("control", CONTROLS)
def test_command_line_refuses_controls(control: str) -> None:
    with pytest.raises(LocalProtocolError):
        command_line("NOOP", f"x{control}y")
    with pytest.raises(LocalProtocolError):
        check_no_controls(f"x{control}", "value")


def test_command_line_length_bound() -> None:
    assert len(command_line("RCPT", "TO:<" + "a" * (MAX_COMMAND_LINE - 12) + ">")) == MAX_COMMAND_LINE
    with pytest.raises(LocalProtocolError):
        command_line("RCPT", "TO:<" + "a" * MAX_COMMAND_LINE + ">")
