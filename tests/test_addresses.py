"""Envelope addresses: only an RFC 5321 §4.1.2 Mailbox (RFC 6531 §3.3 when UTF-8) ever reaches MAIL or RCPT.

``encode_address`` is the one validator: the engine calls it for MAIL FROM and each RCPT TO before a byte
is written, and the command line calls it for every address it is given.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import smtp_fsm
from smtp_fsm import cli
from smtp_fsm.addresses import _FAST_MAILBOX, _encode_mailbox, encode_address
from smtp_fsm.errors import LocalProtocolError

LONG_LOCAL = "a" * 100  # over RFC 5321 §4.5.3.1.1's 64 octets, which bind servers; §4.5.3.1 lets a client send it
LABEL_63 = "a" * 63
DOMAIN_255 = ".".join([LABEL_63] * 3 + ["b" * 61]) + ".c"  # 63*3 + 61 + 1 + 3 dots = 255 octets
assert len(DOMAIN_255) == 255


@pytest.mark.parametrize(
    "address",
    [
        "user@example.com",
        "first.last@example.com",
        "user+tag@example.com",
        "!#$%&'*+/=?^_`{|}~-@example.com",  # every atext special (RFC 5322 §3.2.3)
        "user@localhost",  # one label is a Domain
        "user@mail-1.example.org",
        "user@a.b",
        "user@123.example",
        f"{LONG_LOCAL}@example.com",
        f"user@{LABEL_63}.example",
        f"user@{DOMAIN_255}",
        '"a b"@example.com',  # qtextSMTP includes the space
        '"a\\"b"@example.com',  # quoted-pairSMTP
        '"a\\\\b"@example.com',
        '"a@b"@example.com',
        '"a..b"@example.com',
        '""@example.com',  # *QcontentSMTP: the empty quoted string
        "user@[192.0.2.1]",
        "user@[255.255.255.255]",
        "user@[IPv6:2001:db8::1]",
        "user@[ipv6:2001:DB8::1]",  # "IPv6:" is case-insensitive (RFC 5234 §2.3)
        "user@[IPv6:::1]",
        "user@[IPv6:2001:db8:0:0:0:0:0:1]",
        "user@[IPv6:::ffff:192.0.2.1]",
        "user@xn--bcher-kva.de",  # a real A-label
        "user@XN--BCHER-KVA.DE",
        "Postmaster",  # RFC 5321 §4.1.1.3, as a recipient
        "postmaster",
        "POSTMASTER",
    ],
)
@pytest.mark.parametrize("smtputf8", [False, True])
def test_valid_ascii_addresses_go_as_they_are(address: str, smtputf8: bool) -> None:
    assert encode_address(address, smtputf8=smtputf8) == (address, False)


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("a b@example.com", "a space is not allowed outside a quoted local part"),
        ("a b c@example.com", "a space is not allowed outside a quoted local part"),
        ("user", "has no '@' and a domain"),
        ("user.example.com", "has no '@' and a domain"),
        ('"a b"', "has no '@' and a domain"),
        ("@example.com", "the local part before '@' is empty"),
        ("user@", "the domain after '@' is empty"),
        ("a..b@example.com", "two in a row"),
        (".a@example.com", "a '.' at its start or end"),
        ("a.@example.com", "a '.' at its start or end"),
        ("a@b@example.com", "'@' is not allowed in an unquoted local part"),
        ("a(b)@example.com", "'(' is not allowed in an unquoted local part"),
        ("a,b@example.com", "',' is not allowed in an unquoted local part"),
        ("a\\b@example.com", "'\\\\' is not allowed in an unquoted local part"),
        ('a"b"@example.com', "'\"' is not allowed in an unquoted local part"),
        ('"a"b@example.com', "a quoted local part must be the whole local part"),
        ('"a".b@example.com', "a quoted local part must be the whole local part"),
        ('"unclosed@example.com', "the quoted local part has no closing"),
        ('"a\\"@example.com', "the quoted local part has no closing"),
        ("x@ex_ample.com", "domain label 'ex_ample' has the character '_'"),
        ("x@exa mple.com", "domain label 'exa mple' has the character ' '"),
        ("x@-example.com", "domain label '-example' must not begin or end with '-'"),
        ("x@example-.com", "domain label 'example-' must not begin or end with '-'"),
        ("x@example.com.", "the domain ends with '.'"),
        ("x@.example.com", "the domain has an empty label"),
        ("x@example..com", "the domain has an empty label"),
        (f"x@{'a' * 64}.com", "64 octets long, over the 63 allowed"),
        (f"x@{DOMAIN_255}x", "256 octets long, over the 255 allowed"),
        ("x@[192.0.2.256]", "[192.0.2.256] is not a valid IPv4 address"),
        ("x@[01.2.3.4]", "[01.2.3.4] is not a valid IPv4 address"),  # octal to inet_aton: refused, not guessed
        ("x@[192.0.2]", "[192.0.2] is not an IPv4 address literal"),
        ("x@[example.com]", "[example.com] is not an IPv4 address literal"),
        ("x@[]", "[] is not an IPv4 address literal"),
        ("x@[192.0.2.1", "an address literal must end the address with ']'"),
        ("x@[192.0.2.1].com", "an address literal must end the address with ']'"),
        ("x@[::1]", "an IPv6 address literal needs the 'IPv6:' tag"),
        ("x@[IPv6:2001:db8::g]", "[IPv6:2001:db8::g] is not a valid IPv6 address"),
        ("x@[IPv6:1:2:3:4:5:6:7:8:9]", "is not a valid IPv6 address"),
        ("x@[IPv6:fe80::1%eth0]", "[IPv6:fe80::1%eth0] is not a valid IPv6 address literal"),
        ("x@[IPv6:1:2:3:4:5:6:7::]", "'::' stands for a single group"),
        ("x@[X-tag:value]", "the address literal tag 'X-tag' is not supported"),
        ("x@xn--zz.example", "domain label 'xn--zz' starts with 'xn--' but is not a valid IDNA A-label"),
        ("x@xn--ls8h.example", "not a valid IDNA A-label"),  # decodes to an emoji, which IDNA2008 disallows
        ("us<er@example.com", "must not contain '<' or '>'"),
        ("user@example.com> SIZE=1", "must not contain '<' or '>'"),
        ("user\r\n@example.com", "contains the control character '\\r'"),
        ("user\t@example.com", "contains the control character '\\t'"),
    ],
)
def test_invalid_addresses_are_refused_naming_the_problem(address: str, problem: str) -> None:
    for smtputf8 in (False, True):
        for allow_null in (False, True):
            with pytest.raises(LocalProtocolError) as caught:
                encode_address(address, smtputf8=smtputf8, allow_null=allow_null)
            message = str(caught.value)
            assert problem in message
            assert repr(address) in message  # the caller sees which address it was


def test_null_sender_only_as_sender() -> None:
    assert encode_address("", smtputf8=False, allow_null=True) == ("", False)
    with pytest.raises(LocalProtocolError, match="empty recipient address"):
        encode_address("", smtputf8=False)


@pytest.mark.parametrize("postmaster", ["Postmaster", "postmaster"])
def test_bare_postmaster_is_a_recipient_not_a_sender(postmaster: str) -> None:
    # RFC 5321 §4.1.1.3 allows RCPT TO:<Postmaster>; a Reverse-path is a Path or "<>" (§4.1.2), and a Path
    # holds a Mailbox, which has a domain.
    assert encode_address(postmaster, smtputf8=False) == (postmaster, False)
    with pytest.raises(LocalProtocolError, match="only a recipient"):
        encode_address(postmaster, smtputf8=False, allow_null=True)
    assert encode_address("postmaster@example.com", smtputf8=False, allow_null=True) == (
        "postmaster@example.com", False)


# --- RFC 6531 and IDNA -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "a_labels"),
    [
        ("user@例子.广告", "user@xn--fsqu00a.xn--4rr70v"),
        ("user@bücher.de", "user@xn--bcher-kva.de"),
        ("user@straße.de", "user@xn--strae-oqa.de"),  # IDNA2008: not IDNA2003's "strasse.de"
        ("user@пример.испытание", "user@xn--e1afmkfd.xn--80akhbyknj4f"),
        ("user@مثال.إختبار", "user@xn--mgbh0fb.xn--kgbechtv"),  # right to left, Bidi rule holds
        ("user@דוגמה.טעסט", "user@xn--6dbbec0c.xn--deba0ad"),
        ("user@mail.例子.example", "user@mail.xn--fsqu00a.example"),
        ('"a b"@例子.广告', '"a b"@xn--fsqu00a.xn--4rr70v'),
    ],
)
def test_idn_domain_with_ascii_local_part(address: str, a_labels: str) -> None:
    assert encode_address(address, smtputf8=False) == (a_labels, False)  # the server lacks SMTPUTF8
    assert encode_address(address, smtputf8=True) == (address, True)


@pytest.mark.parametrize("address", ["用户@例子.广告", "用户@example.com", "ü@example.com", "josé.garcía@example.com",
                                     '"用 户"@example.com', "用户@[192.0.2.1]", "a.用户@xn--fsqu00a.example"])
def test_utf8_local_part_needs_smtputf8(address: str) -> None:
    assert encode_address(address, smtputf8=True) == (address, True)
    with pytest.raises(LocalProtocolError, match="SMTPUTF8") as caught:
        encode_address(address, smtputf8=False)
    assert repr(address) in str(caught.value)


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("user@Bücher.de", "upper-case 'B'"),
        ("user@bÜcher.de", "upper-case 'Ü'"),
        ("user@bu\u0308cher.de", "not in Unicode NFC"),
        ("user@ｅｘａｍｐｌｅ.com", "'ｅ' (U+FF45)"),  # fullwidth: NFKC would change it
        ("user@例子。广告", "the full stop '。'"),
        ("user@a\u200db.com", "U+200D"),  # ZERO WIDTH JOINER: CONTEXTJ, refused
        ("user@\u0301a.com", "begins with a combining mark"),
        ("user@aب.com", "Bidi rule"),
        ("user@\u0661a.com", "Bidi rule"),
        ("user@x\u0640y.com", "U+0640"),  # ARABIC TATWEEL: DISALLOWED by RFC 5892 §2.6
        ("user@a\u00b7b.com", "U+00B7"),  # MIDDLE DOT: CONTEXTO, refused
        ("user@\u0661\u06f1.com", "Arabic-Indic"),
        ("user@例子-.com", "begins or ends with '-'"),
        ("user@ab--例子.com", "'--' in its third and fourth places"),
        ("user@例子_x.com", "the character '_'"),
        ("user@" + "例" * 60 + ".com", "over the 63 allowed"),
    ],
)
def test_invalid_u_labels_are_refused(address: str, problem: str) -> None:
    for smtputf8 in (False, True):
        with pytest.raises(LocalProtocolError, match=r"not a valid IDNA U-label|63 allowed") as caught:
            encode_address(address, smtputf8=smtputf8)
        assert problem in str(caught.value)
        assert repr(address) in str(caught.value)


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("a\u3000b@example.com", "the space '\\u3000' is not allowed outside a quoted local part"),
        ("a\u00a0b@example.com", "the space '\\xa0' is not allowed outside a quoted local part"),
        ("user\u0085@example.com", "the control character '\\x85'"),  # NEL
        ('"a\u2028b"@example.com', "the control character '\\u2028'"),
        ("user@\ud800.example", "lone surrogate"),
        ('"a\\é"@example.com', "'\\' may only escape printable ASCII"),
    ],
)
def test_unsafe_non_ascii_is_refused(address: str, problem: str) -> None:
    with pytest.raises(LocalProtocolError) as caught:
        encode_address(address, smtputf8=True)
    assert problem in str(caught.value)


# --- the engine: nothing is queued for an invalid address ---------------------------------------


def _greet(session: smtp_fsm.ClientSession) -> bytes:
    """Play "220 mx" then "250 mx" (the EHLO reply) as a server would; return every byte the client wrote."""
    session.receive_data(b"220 mx\r\n")
    written = session.data_to_send()
    session.receive_data(b"250 mx\r\n")  # fed after EHLO was taken: earlier it would be an unsolicited reply
    written += session.data_to_send()
    assert session.state == "ready"
    return written


def test_sendmail_with_an_invalid_sender_raises_and_queues_nothing() -> None:
    session = smtp_fsm.ClientSession(local_hostname="client.example")
    with pytest.raises(LocalProtocolError, match="a space is not allowed outside a quoted local part"):
        session.sendmail("a b@example.com", ["x@example.com"], b"Subject: x\r\n\r\nhi\r\n")
    assert session.data_to_send() == b""
    written = _greet(session)
    assert written.startswith(b"EHLO ")
    assert b"MAIL" not in written and b"RCPT" not in written


def test_sendmail_with_an_invalid_recipient_raises_and_queues_nothing() -> None:
    session = smtp_fsm.ClientSession(local_hostname="client.example")
    with pytest.raises(LocalProtocolError, match="'ex_ample'"):
        session.sendmail("a@example.com", ["ok@example.com", "x@ex_ample.com"], b"Subject: x\r\n\r\nhi\r\n")
    assert session.data_to_send() == b""
    assert b"MAIL" not in _greet(session)


# --- the command line: the same validator, exit 2, no connection ------------------------------------


@pytest.mark.parametrize(
    ("flags", "problem"),
    [
        (["--from", "a b@example.com", "--to", "x@example.com"], "--from: address 'a b@example.com': a space"),
        (["--from", "Me <a b@example.com>", "--to", "x@example.com"], "a space is not allowed"),
        (["--from", "Postmaster", "--to", "x@example.com"], "only a recipient"),
        (["--from", "me@example.com", "--to", "user"], "--to: address 'user': it has no '@' and a domain"),
        (["--from", "me@example.com", "--to", "ok@example.com, x@ex_ample.com"], "domain label 'ex_ample'"),
        (["--from", "me@example.com", "--to", "ok@example.com", "--bcc", "x@[192.0.2.256]"], "--bcc: address"),
    ],
)
def test_cli_refuses_an_invalid_address_before_connecting(
        flags: list[str], problem: str, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.setblocking(False)
        port = listener.getsockname()[1]
        code = cli.main(["send", "--server", f"127.0.0.1:{port}", *flags, "--subject", "s", "--body", "b"])
        with pytest.raises(BlockingIOError):  # nobody knocked
            listener.accept()
    assert code == cli.EXIT_USAGE
    captured = capsys.readouterr()
    assert problem in captured.err
    assert "Traceback" not in captured.err
    assert captured.out == ""


def test_cli_checks_the_envelope_of_a_ready_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ready.eml"
    path.write_bytes(b"From: someone@example.org\nTo: list@example.org\nSubject: s\n\nbody\n")
    code = cli.main(["send", "--dry-run", "--message", str(path), "--to", "a b@example.org"])
    assert code == cli.EXIT_USAGE
    assert "--to: address 'a b@example.org': a space" in capsys.readouterr().err
    # "Name <addr>" works for --from with --message too, as it does when smtp-fsm builds the message.
    code = cli.main(["send", "--dry-run", "--message", str(path), "--from", "Me <me@example.org>"])
    assert code == cli.EXIT_OK
    assert "# envelope sender: <me@example.org>" in capsys.readouterr().out


def test_cli_sends_to_postmaster() -> None:
    assert cli.main(["send", "--dry-run", "--quiet", "--from", "me@example.org", "--to", "Postmaster"]) == cli.EXIT_OK


# --- properties ------------------------------------------------------------------------------------

_ADDRESS_ALPHABET = st.sampled_from([*"abcXYZ019.-_+=!#$%&'*/?^`{|}~@\"\\ ()<>,;:[]\r\n\t\x00\x7f",
                                     "ü", "例", "\u3000", "\u0085", "\u200d", "\u0301", "ب", "。"])
_LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
_ATOM = st.text(alphabet=st.sampled_from(list("abcXYZ019!#$%&'*+/=?^_`{|}~-")), min_size=1, max_size=8)
_VALID_ASCII = st.builds(
    lambda atoms, labels: ".".join(atoms) + "@" + ".".join(labels),
    st.lists(_ATOM, min_size=1, max_size=3), st.lists(_LABEL, min_size=1, max_size=4),
)
_ADDRESS_LIKE = st.one_of(
    st.text(_ADDRESS_ALPHABET, max_size=30),
    st.builds(lambda local, domain: f"{local}@{domain}", st.text(_ADDRESS_ALPHABET, max_size=12),
              st.text(_ADDRESS_ALPHABET, max_size=12)),
    st.builds(lambda local, domain: f'"{local}"@{domain}', st.text(_ADDRESS_ALPHABET, max_size=12), _LABEL),
    st.builds(lambda local, label: f"{local}@{label}.example", st.text(max_size=10), st.text(max_size=10)),
    st.builds(lambda label: f"user@xn--{label}.example", _LABEL),
    _VALID_ASCII,
)


def _outside_quotes(wire: str) -> str:
    """``wire`` without its quoted local part, if it has one."""
    if not wire.startswith('"'):
        return wire
    i = 1
    while wire[i] != '"':
        i += 2 if wire[i] == "\\" else 1
    return wire[i + 1:]


@settings(max_examples=400, deadline=None)
@given(_ADDRESS_LIKE, st.booleans(), st.booleans())
@example('"a b"@example.com', False, False)
@example('"a\\"b c"@例子.广告', True, False)
def test_whatever_passes_is_safe_on_the_wire(address: str, smtputf8: bool, allow_null: bool) -> None:
    try:
        wire, needs_utf8 = encode_address(address, smtputf8=smtputf8, allow_null=allow_null)
    except LocalProtocolError:
        return  # refusing is always safe; nothing else may be raised
    encoded = wire.encode("utf-8")  # a lone surrogate would fail here
    for forbidden in (b"\r", b"\n", b"<", b">", b"\x00"):
        assert forbidden not in encoded
    assert " " not in _outside_quotes(wire)
    assert needs_utf8 == (not wire.isascii())
    if needs_utf8:
        assert smtputf8


@settings(max_examples=300, deadline=None)
@given(_VALID_ASCII)
def test_generated_dot_string_addresses_pass_unchanged(address: str) -> None:
    assert encode_address(address, smtputf8=False) == (address, False)


@settings(max_examples=400, deadline=None)
@given(st.one_of(_ADDRESS_LIKE, st.text(st.characters(max_codepoint=127), max_size=30)))
def test_the_fast_path_never_accepts_what_the_full_check_refuses(address: str) -> None:
    if _FAST_MAILBOX.match(address):
        assert _encode_mailbox(address, smtputf8=False, sender=False) == (address, False)
