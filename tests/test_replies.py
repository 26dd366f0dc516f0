"""Reply and ReplyParser: RFC 5321 §4.2 grammar, any fragmentation, bounded memory."""

from __future__ import annotations

import pytest

from smtp_fsm import RemoteProtocolError, Reply
from smtp_fsm.replies import MAX_LINE, MAX_LINES, ReplyParser

EHLO_WIRE = b"250-mx.example greets you\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 8BITMIME\r\n"


def test_single_line_reply() -> None:
    assert ReplyParser().feed(b"250 2.0.0 Ok: queued as ABC123\r\n") == [
        Reply(250, ("2.0.0 Ok: queued as ABC123",))
    ]


def test_multi_line_reply_is_one_reply() -> None:
    [reply] = ReplyParser().feed(EHLO_WIRE)
    assert reply.code == 250
    assert reply.lines == ("mx.example greets you", "PIPELINING", "SIZE 10240000", "8BITMIME")
    assert reply.text == "mx.example greets you\nPIPELINING\nSIZE 10240000\n8BITMIME"


def test_bare_code_without_text() -> None:
    # RFC 5321 §4.2: Reply-line = *( Reply-code "-" [ textstring ] CRLF ) Reply-code [ SP textstring ] CRLF
    assert ReplyParser().feed(b"250\r\n") == [Reply(250, ("",))]


def test_several_replies_in_one_feed_keep_their_order() -> None:
    replies = ReplyParser().feed(b"250 a\r\n550 b\r\n354 c\r\n")
    assert [r.code for r in replies] == [250, 550, 354]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 13])
def test_any_fragmentation_gives_the_same_replies(size: int) -> None:
    wire = EHLO_WIRE + b"220 ready\r\n" + b"550-5.1.1 no\r\n550 5.1.1 such user\r\n"
    whole = ReplyParser().feed(wire)
    parser = ReplyParser()
    pieces: list[Reply] = []
    for start in range(0, len(wire), size):
        pieces.extend(parser.feed(wire[start : start + size]))
    assert pieces == whole
    assert parser.buffered == 0
    assert not parser.has_partial


def test_crlf_split_between_feeds() -> None:
    parser = ReplyParser()
    assert parser.feed(b"250 ok\r") == []
    assert parser.feed(b"\n") == [Reply(250, ("ok",))]


def test_partial_reply_is_buffered() -> None:
    parser = ReplyParser()
    assert parser.feed(b"250-first\r\n250 sec") == []
    assert parser.has_partial
    assert parser.buffered > 0
    assert parser.feed(b"ond\r\n") == [Reply(250, ("first", "second"))]


@pytest.mark.parametrize(
    "line",
    [
        b"25 short\r\n",
        b"abc text\r\n",
        b"150 first digit 1\r\n",
        b"650 first digit 6\r\n",
        b"25x bad third digit\r\n",
        b"250_ bad separator\r\n",
        b"\r\n",
        b" 250 leading space\r\n",
    ],
)
def test_malformed_reply_lines_are_remote_errors(line: bytes) -> None:
    refused(line)


def refused(wire: bytes, parser: ReplyParser | None = None) -> RemoteProtocolError:
    """Feed ``wire``; the parser must hold the error (it is reported after the replies before it)."""
    parser = parser or ReplyParser()
    parser.feed(wire)
    assert parser.error is not None, f"{wire[:60]!r} was accepted"
    assert parser.feed(b"250 more\r\n") == [], "a parser that failed takes nothing more"
    return parser.error


@pytest.mark.parametrize("wire", [b"260 second digit 6\r\n", b"571 5.7.1 unknown code\r\n", b"299 odd\r\n"])
def test_unknown_codes_are_kept_for_their_first_digit(wire: bytes) -> None:
    # RFC 5321 §4.2: a client handles a code it does not know by its first digit.
    parser = ReplyParser()
    [reply] = parser.feed(wire)
    assert parser.error is None and reply.code == int(wire[:3])


def test_replies_before_bad_bytes_are_returned_then_the_error() -> None:
    parser = ReplyParser()
    assert parser.feed(b"250 2.0.0 queued as X\r\nGARBAGE\r\n") == [Reply(250, ("2.0.0 queued as X",))]
    assert parser.error is not None and "malformed" in str(parser.error) and parser.error.data == b"G"


@pytest.mark.parametrize("wire", [
    b"220 mx\r\nHELLO\r\n", b"250-one\r\n251 two\r\n", b"250 a\rb\r\n", b"250 bare\n", b"25\r\n",
    b"220 " + b"x" * (MAX_LINE - 4) + b"\r\n", b"220 " + b"x" * (MAX_LINE - 3) + b"\r\n", b"250 ok\r\n\xff\xfe",
    b"250-" + b"y" * (MAX_LINE + 10) + b"\n250 x\r\n",
])
def test_the_same_replies_and_error_however_the_bytes_are_split(wire: bytes) -> None:
    def run(pieces: list[bytes]) -> tuple[list[Reply], str | None]:
        parser, replies = ReplyParser(), []
        for piece in pieces:
            replies += parser.feed(piece)
        return replies, str(parser.error) if parser.error else None

    whole = run([wire])
    assert run([wire[i : i + 1] for i in range(len(wire))]) == whole
    for cut in range(len(wire) + 1):
        assert run([wire[:cut], wire[cut:]]) == whole, cut


def test_line_limit_does_not_depend_on_where_crlf_is_split() -> None:
    # A line of exactly MAX_LINE octets is accepted whether its CR and LF arrive together or apart.
    line = b"220 " + b"x" * (MAX_LINE - 4)
    parser = ReplyParser()
    assert parser.feed(line + b"\r") == [] and parser.error is None
    assert parser.feed(b"\n") == [Reply(220, ("x" * (MAX_LINE - 4),))]


def test_code_change_inside_multiline_reply() -> None:
    refused(b"250-one\r\n550 two\r\n")


@pytest.mark.parametrize("wire", [b"250 ok\n", b"250-one\n250 two\r\n", b"250 a\rb\r\n"])
def test_bare_lf_or_cr_in_a_reply_is_refused(wire: bytes) -> None:
    # RFC 5321 §2.3.8: CRLF only.
    refused(wire)


def test_line_at_the_bound_is_accepted() -> None:
    text = "x" * (MAX_LINE - 4)
    [reply] = ReplyParser().feed(b"250 " + text.encode() + b"\r\n")
    assert reply.lines == (text,)


def test_overlong_complete_line_is_refused() -> None:
    refused(b"250 " + b"x" * MAX_LINE + b"\r\n")


def test_overlong_unterminated_line_is_refused_and_memory_bounded() -> None:
    parser = ReplyParser()
    chunk = b"250 " + b"y" * 500
    for _ in range(100):  # bounded: the parser must give up long before this
        parser.feed(chunk)
        assert parser.buffered <= MAX_LINE + 1
        if parser.error is not None:
            break
        chunk = b"y" * 500
    assert parser.error is not None and "longer than" in str(parser.error)


def test_too_many_lines_is_refused() -> None:
    parser = ReplyParser()
    for _ in range(MAX_LINES + 10):
        parser.feed(b"250-KEYWORD\r\n")
    assert parser.error is not None and "lines" in str(parser.error)


def test_max_lines_reply_is_accepted() -> None:
    wire = b"250-K\r\n" * (MAX_LINES - 1) + b"250 last\r\n"
    [reply] = ReplyParser().feed(wire)
    assert len(reply.lines) == MAX_LINES


def test_bounds_are_generous_multiples_of_the_rfc_limit() -> None:
    # RFC 5321 §4.5.3.1.5: 512 octets per reply line.
    assert 512 <= MAX_LINE <= 64 * 1024
    assert 16 <= MAX_LINES <= 10_000


def test_utf8_text_is_decoded_and_invalid_bytes_replaced() -> None:
    good, bad = ReplyParser().feed("250 你好\r\n".encode() + b"251 \xff\r\n")
    assert good.lines == ("你好",)
    assert bad.code == 251 and "\ufffd" in bad.text


@pytest.mark.parametrize(
    ("code", "text", "enhanced"),
    [
        (550, "5.1.1 user unknown", "5.1.1"),
        (250, "2.0.0 Ok", "2.0.0"),
        (452, "4.5.3 Too many recipients", "4.5.3"),
        (552, "5.3.4 Message too big", "5.3.4"),
        (250, "5.0.0 looks like a code but class differs", None),  # RFC 2034 §4: class must match
        (550, "user unknown", None),
        (550, "5.1.1user glued", None),
        (550, "5.1234.1 too many digits", None),
        (250, "2.1.0", "2.1.0"),
    ],
)
def test_enhanced_code(code: int, text: str, enhanced: str | None) -> None:
    assert Reply(code, (text,)).enhanced_code == enhanced


def test_reply_classes() -> None:
    assert Reply(451, ("x",)).is_transient and not Reply(451, ("x",)).is_permanent
    assert Reply(554, ("x",)).is_permanent and not Reply(554, ("x",)).is_transient
    assert not Reply(250, ("x",)).is_transient and not Reply(250, ("x",)).is_permanent


def test_to_bytes_round_trips() -> None:
    [reply] = ReplyParser().feed(EHLO_WIRE)
    assert reply.to_bytes() == EHLO_WIRE
    assert ReplyParser().feed(Reply(221, ("bye",)).to_bytes()) == [Reply(221, ("bye",))]


def test_str_shows_code_and_text() -> None:
    assert str(Reply(550, ("5.1.1 no such user",))) == "550 5.1.1 no such user"


def test_reply_is_immutable() -> None:
    reply = Reply(250, ("ok",))
    with pytest.raises(AttributeError):
        reply.code = 550  # type: ignore[misc]


def test_a_reply_of_max_lines_passes_and_one_more_line_is_refused() -> None:
    ReplyParser().feed(b"250-K\r\n" * (MAX_LINES - 1) + b"250 last\r\n")
    assert "lines" in str(refused(b"250-K\r\n" * MAX_LINES + b"250 last\r\n"))
