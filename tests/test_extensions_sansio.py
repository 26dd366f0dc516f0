"""Sans-IO ESMTP extensions byte for byte: PIPELINING, CHUNKING, SIZE, 8BITMIME, SMTPUTF8, DSN, codes, 452, LMTP."""

from __future__ import annotations

from email.message import EmailMessage

import pytest
from sansio_helpers import GREETING, ehlo, ready, reply, stepper

from smtp_fsm import (
    CommandDone,
    DataRefused,
    LocalProtocolError,
    MessageSent,
    RecipientsRefused,
    SenderRefused,
)
from smtp_fsm.testing import SessionStepper

OK = b"250 ok\r\n"
GO = b"354 go ahead\r\n"
QUEUED = b"250 2.0.0 queued as Q1\r\n"
NO_USER = b"550 5.1.1 no such user\r\n"
GROUP = b"MAIL FROM:<a@x.org>\r\nRCPT TO:<b@y.org>\r\nRCPT TO:<c@y.org>\r\nDATA\r\n"


def _two_recipients(*keywords: str, **options: object) -> tuple[SessionStepper, int]:
    h = ready("PIPELINING", *keywords, **options)
    ticket = h.session.sendmail("a@x.org", ["b@y.org", "c@y.org"], b"hi\r\n")
    step = h.pending()
    assert step.sent == GROUP
    return h, ticket


# --- PIPELINING: every failure inside a group --------------------------------------------


def test_group_all_accepted() -> None:
    h, ticket = _two_recipients()
    assert h.feed(OK + OK + OK + GO).sent == b"hi\r\n.\r\n"
    result = h.feed(QUEUED).results[ticket]
    assert result.ok and set(result.accepted) == {"b@y.org", "c@y.org"} and result.refused == {}


def test_group_replies_split_anywhere_are_only_recorded() -> None:
    h, _ = _two_recipients()
    for piece in (OK, OK, b"55", b"0 no\r\n"):
        step = h.feed(piece)
        assert step.sent == b"" and step.state == "data"
    assert h.feed(GO).sent == b"hi\r\n.\r\n"


def test_group_mail_refused() -> None:
    h, ticket = _two_recipients()
    step = h.feed(b"550 5.7.1 sender rejected\r\n" + b"503 5.5.1 need MAIL\r\n" * 2 + b"503 5.5.1 need RCPT\r\n")
    assert step.sent == b"RSET\r\n"
    step = h.feed(OK)
    result = step.results[ticket]
    assert isinstance(result.error, SenderRefused) and result.error.reply.enhanced_code == "5.7.1"
    assert not result.ok and step.state == "ready"


def test_group_some_recipients_refused() -> None:
    h, ticket = _two_recipients()
    assert h.feed(OK + NO_USER + OK + GO).sent == b"hi\r\n.\r\n"
    result = h.feed(QUEUED).results[ticket]
    assert result.ok
    assert list(result.accepted) == ["c@y.org"]
    assert result.refused["b@y.org"].code == 550 and result.refused["b@y.org"].enhanced_code == "5.1.1"


@pytest.mark.parametrize("data_code", [503, 554])
def test_group_all_recipients_refused_data_refused(data_code: int) -> None:
    h, ticket = _two_recipients()
    step = h.feed(OK + NO_USER + NO_USER + reply(data_code, "no valid recipients"))
    assert step.sent == b"RSET\r\n"
    step = h.feed(OK)
    result = step.results[ticket]
    assert isinstance(result.error, RecipientsRefused)
    assert set(result.error.replies) == {"b@y.org", "c@y.org"}
    assert step.of(CommandDone) == () and step.state == "ready"


def test_group_data_refused_after_accepted_recipients() -> None:
    h, ticket = _two_recipients()
    step = h.feed(OK + OK + OK + b"451 4.3.0 try later\r\n")
    assert step.sent == b"RSET\r\n"
    result = h.feed(OK).results[ticket]
    assert isinstance(result.error, DataRefused) and result.error.code == 451


def test_group_354_although_every_recipient_refused_sends_lone_dot() -> None:
    # RFC 2920 §3.1: the client must end the data at once with a lone ".".
    h, ticket = _two_recipients()
    step = h.feed(OK + NO_USER + NO_USER + GO)
    assert step.sent == b".\r\n" and step.state == "data_abort"
    step = h.feed(b"554 5.5.1 no valid recipients\r\n")
    assert step.sent == b"RSET\r\n"
    step = h.feed(OK)
    result = step.results[ticket]
    assert isinstance(result.error, RecipientsRefused) and not result.accepted
    assert step.state == "ready"
    h.session.sendmail("a@x.org", ["d@y.org"], b"next\r\n")
    step = h.pending()
    assert step.sent == b"MAIL FROM:<a@x.org>\r\nRCPT TO:<d@y.org>\r\nDATA\r\n"


def test_group_354_after_refused_sender_sends_lone_dot() -> None:
    h, ticket = _two_recipients()
    step = h.feed(b"550 no\r\n" + OK + OK + GO)
    assert step.sent == b".\r\n"
    h.feed(OK)
    result = h.feed(OK).results[ticket]
    assert isinstance(result.error, SenderRefused)


def test_cross_message_pipelining_one_round_trip_each() -> None:
    h = ready("PIPELINING")
    tickets = h.session.send_many([("a@x.org", "b@y.org", f"m{i}\r\n") for i in range(4)])
    step = h.pending()
    writes = [step.sent]
    step = h.feed(OK + OK + GO)
    writes.append(step.sent)
    done = {}
    for _ in range(3):
        step = h.feed(QUEUED + OK + OK + GO)
        writes.append(step.sent)
        done.update(step.results)
    done.update(h.feed(QUEUED).results)
    assert writes[1] == b"m0\r\n.\r\nMAIL FROM:<a@x.org>\r\nRCPT TO:<b@y.org>\r\nDATA\r\n"
    assert writes[-1] == b"m3\r\n.\r\n"
    assert sorted(done) == tickets and all(r.ok for r in done.values())


def test_noop_and_quit_end_a_group() -> None:
    h = ready("PIPELINING")
    h.session.sendmail("a@x.org", "b@y.org", b"m0\r\n")
    h.pending()
    h.session.noop()
    h.pending()
    h.session.sendmail("a@x.org", "c@y.org", b"m1\r\n")
    h.pending()
    h.session.quit()
    h.pending()
    assert h.feed(OK + OK + GO).sent == b"m0\r\n.\r\n"
    assert h.feed(QUEUED).sent == b"NOOP\r\n"
    assert h.feed(OK).sent == b"MAIL FROM:<a@x.org>\r\nRCPT TO:<c@y.org>\r\nDATA\r\n"
    assert h.feed(OK + OK + GO).sent == b"m1\r\n.\r\n"
    assert h.feed(QUEUED).sent == b"QUIT\r\n"


def test_ehlo_and_auth_end_a_group() -> None:
    h = stepper(username="u", password="p", loopback=True)
    h.session.sendmail("a@x.org", "b@y.org", b"m0\r\n")
    h.pending()
    assert h.feed(GREETING).sent == b"EHLO client.example\r\n"
    step = h.feed(ehlo("PIPELINING", "AUTH PLAIN"))
    assert step.sent == b"AUTH PLAIN AHUAcA==\r\n"
    assert h.feed(reply(235, "ok")).sent == b"MAIL FROM:<a@x.org>\r\nRCPT TO:<b@y.org>\r\nDATA\r\n"


# --- CHUNKING (RFC 3030) -----------------------------------------------------------------


def test_bdat_single_chunk_no_dot_stuffing() -> None:
    h = ready("PIPELINING", "CHUNKING")
    body = b".dot line\r\n.\r\nend\r\n"
    ticket = h.session.sendmail("a@x.org", ["b@y.org"], body)
    step = h.pending()
    assert step.sent == b"MAIL FROM:<a@x.org>\r\nRCPT TO:<b@y.org>\r\nBDAT %d LAST\r\n" % len(body) + body
    assert b"DATA" not in step.sent
    step = h.feed(OK + OK + QUEUED)
    assert step.results[ticket].ok and step.state == "ready" and step.sent == b""


def test_bdat_several_chunks_pipelined() -> None:
    h = ready("PIPELINING", "CHUNKING", chunk_size=4)
    ticket = h.session.sendmail("a@x.org", ["b@y.org"], b"0123456789")  # normalised: 12 octets
    step = h.pending()
    assert step.sent == (
        b"MAIL FROM:<a@x.org>\r\nRCPT TO:<b@y.org>\r\n"
        b"BDAT 4\r\n0123BDAT 4\r\n4567BDAT 4 LAST\r\n89\r\n"
    )
    step = h.feed(OK + OK + OK + OK + QUEUED)
    assert step.results[ticket].ok


def test_bdat_chunks_without_pipelining_one_by_one() -> None:
    h = ready("CHUNKING", chunk_size=5)
    ticket = h.session.sendmail("a@x.org", ["b@y.org"], b"abcdefgh")  # 10 octets with CRLF
    step = h.pending()
    assert step.sent == b"MAIL FROM:<a@x.org>\r\n"
    assert h.feed(OK).sent == b"RCPT TO:<b@y.org>\r\n"
    assert h.feed(OK).sent == b"BDAT 5\r\nabcde"
    assert h.feed(OK).sent == b"BDAT 5 LAST\r\nfgh\r\n"
    assert h.feed(QUEUED).results[ticket].ok


def test_bdat_empty_message() -> None:
    h = ready("CHUNKING")
    h.session.sendmail("a@x.org", ["b@y.org"], b"")
    h.pending()
    h.feed(OK)
    assert h.feed(OK).sent == b"BDAT 0 LAST\r\n"


@pytest.mark.parametrize("code", [554, 552, 451])
def test_bdat_last_refused_then_rset_and_usable(code: int) -> None:
    h = ready("PIPELINING", "CHUNKING")
    ticket = h.session.sendmail("a@x.org", ["b@y.org"], b"hello\r\n")
    h.pending()
    step = h.feed(OK + OK + reply(code, "no"))
    assert step.sent == b"RSET\r\n"
    step2 = h.feed(OK)
    results = {**step.results, **step2.results}
    assert isinstance(results[ticket].error, DataRefused) and results[ticket].error.code == code
    assert step2.of(CommandDone) == () and step2.state == "ready"
    h.session.sendmail("a@x.org", ["b@y.org"], b"again\r\n")
    step = h.pending()
    assert step.sent.startswith(b"MAIL FROM:<a@x.org>\r\n")


def test_bdat_middle_chunk_refused() -> None:
    h = ready("PIPELINING", "CHUNKING", chunk_size=4)
    ticket = h.session.sendmail("a@x.org", ["b@y.org"], b"0123456789")
    h.pending()
    step = h.feed(OK + OK + b"552 too big\r\n" + b"503 bad sequence\r\n" * 2)
    assert step.sent == b"RSET\r\n"
    step2 = h.feed(OK)
    result = {**step.results, **step2.results}[ticket]
    assert not result.ok and isinstance(result.error, DataRefused)


def test_bdat_every_recipient_refused() -> None:
    h = ready("PIPELINING", "CHUNKING")
    ticket = h.session.sendmail("a@x.org", ["b@y.org"], b"hello\r\n")
    h.pending()
    step = h.feed(OK + NO_USER + b"554 no valid recipients\r\n")
    assert step.sent == b"RSET\r\n"
    step2 = h.feed(OK)
    result = {**step.results, **step2.results}[ticket]
    assert isinstance(result.error, RecipientsRefused)


def test_chunking_switched_off_uses_data() -> None:
    h = ready("PIPELINING", "CHUNKING", chunking=False)
    h.session.sendmail("a@x.org", ["b@y.org"], b"hello\r\n")
    step = h.pending()
    assert step.sent.endswith(b"DATA\r\n") and b"BDAT" not in step.sent


# --- SIZE (RFC 1870) -----------------------------------------------------------------------


def test_size_parameter_is_the_exact_octet_count() -> None:
    h = ready("SIZE 1000")
    body = b".a\nb\n"  # normalised ".a\r\nb\r\n" = 7 octets; the stuffing dot is not counted
    h.session.sendmail("a@x.org", ["b@y.org"], body)
    step = h.pending()
    assert step.sent == b"MAIL FROM:<a@x.org> SIZE=7\r\n"


def test_message_over_the_limit_raises_before_mail() -> None:
    h = ready("SIZE 10")
    with pytest.raises(LocalProtocolError):
        h.session.sendmail("a@x.org", ["b@y.org"], b"x" * 20)
    assert h.pending().sent == b"" and h.state == "ready"
    h.session.sendmail("a@x.org", ["b@y.org"], b"12345678")  # 10 octets: exactly the limit
    step = h.pending()
    assert step.sent == b"MAIL FROM:<a@x.org> SIZE=10\r\n"


def test_message_over_the_limit_queued_before_ehlo_fails_without_mail() -> None:
    h = stepper()
    ticket = h.session.sendmail("a@x.org", ["b@y.org"], b"x" * 20)
    h.pending()
    h.feed(GREETING)
    step = h.feed(ehlo("SIZE 10"))
    assert step.sent == b""
    assert isinstance(step.results[ticket].error, LocalProtocolError)


@pytest.mark.parametrize("keyword", ["SIZE", "SIZE 0"])
def test_no_limit_announced(keyword: str) -> None:
    h = ready(keyword)
    h.session.sendmail("a@x.org", ["b@y.org"], b"x" * 998 + b"\n" + b"y" * 998)
    step = h.pending()
    assert step.sent == b"MAIL FROM:<a@x.org> SIZE=2000\r\n"


def test_no_size_parameter_without_size() -> None:
    h = ready()
    h.session.sendmail("a@x.org", ["b@y.org"], b"x\r\n")
    step = h.pending()
    assert step.sent == b"MAIL FROM:<a@x.org>\r\n"


@pytest.mark.parametrize("code", [552, 452])
def test_size_refused_at_mail(code: int) -> None:
    h = ready("SIZE 1000")
    ticket = h.session.sendmail("a@x.org", ["b@y.org"], b"x\r\n")
    h.pending()
    assert h.feed(reply(code, f"{code // 100}.3.4 message too big")).sent == b"RSET\r\n"
    result = h.feed(OK).results[ticket]
    assert isinstance(result.error, SenderRefused) and result.error.code == code


def test_size_refused_at_end_of_data() -> None:
    h = ready("SIZE", "PIPELINING")
    ticket = h.session.sendmail("a@x.org", ["b@y.org"], b"x\r\n")
    h.pending()
    h.feed(OK + OK + GO)
    result = h.feed(b"552 5.3.4 message too big\r\n").results[ticket]
    assert isinstance(result.error, DataRefused) and result.error.code == 552
    assert "5.3.4" in str(result.error)


# --- 8BITMIME -----------------------------------------------------------------------------


def _chinese() -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "张三 <a@x.org>"
    msg["To"] = "b@y.org"
    msg["Subject"] = "你好"
    msg.set_content("你好，世界\n")
    return msg


def test_body_8bitmime_when_offered() -> None:
    h = ready("8BITMIME", "PIPELINING")
    h.session.send_message(_chinese())
    step = h.pending()
    assert step.sent.startswith(b"MAIL FROM:<a@x.org> BODY=8BITMIME\r\n")
    content = h.feed(OK + OK + GO).sent
    assert "你好，世界".encode() in content


def test_email_message_goes_seven_bit_without_8bitmime() -> None:
    h = ready("PIPELINING")
    h.session.send_message(_chinese())
    step = h.pending()
    assert step.sent.startswith(b"MAIL FROM:<a@x.org>\r\n")
    content = h.feed(OK + OK + GO).sent
    assert content.isascii() and content.endswith(b"\r\n.\r\n")


def test_raw_eight_bit_without_8bitmime_raises() -> None:
    h = ready()
    with pytest.raises(LocalProtocolError):
        h.session.sendmail("a@x.org", ["b@y.org"], "Subject: x\r\n\r\n你好\r\n".encode())
    assert h.pending().sent == b""


# --- SMTPUTF8 (RFC 6531) -------------------------------------------------------------------


def test_utf8_addresses_with_smtputf8() -> None:
    h = ready("SMTPUTF8", "8BITMIME", "PIPELINING")
    h.session.sendmail("用户@例子.广告", ["收件人@例子.广告"], b"hi\r\n")
    step = h.pending()
    assert step.sent == "MAIL FROM:<用户@例子.广告> SMTPUTF8\r\nRCPT TO:<收件人@例子.广告>\r\nDATA\r\n".encode()


def test_utf8_message_headers_with_smtputf8() -> None:
    h = ready("SMTPUTF8", "8BITMIME", "PIPELINING")
    msg = EmailMessage()
    msg["From"] = "用户@例子.广告"
    msg["To"] = "收件人@例子.广告"
    msg["Subject"] = "你好"
    msg.set_content("正文\n")
    h.session.send_message(msg)
    step = h.pending()
    assert step.sent.startswith("MAIL FROM:<用户@例子.广告>".encode())
    assert b" SMTPUTF8" in step.sent.split(b"\r\n")[0]
    content = h.feed(OK + OK + GO).sent
    assert "From: 用户@例子.广告".encode() in content


def test_utf8_local_part_without_smtputf8_raises_before_anything() -> None:
    h = ready("8BITMIME", "PIPELINING")
    with pytest.raises(LocalProtocolError, match="SMTPUTF8"):
        h.session.sendmail("a@x.org", ["用户@例子.广告"], b"hi\r\n")
    assert h.pending().sent == b""


def test_idn_domain_goes_as_a_labels_without_smtputf8() -> None:
    h = ready("PIPELINING")
    h.session.sendmail("a@例子.广告", ["b@例子.广告"], b"hi\r\n")
    step = h.pending()
    assert step.sent == (
        b"MAIL FROM:<a@xn--fsqu00a.xn--4rr70v>\r\nRCPT TO:<b@xn--fsqu00a.xn--4rr70v>\r\nDATA\r\n"
    )


# --- DSN (RFC 3461) ---------------------------------------------------------------------------


def test_dsn_parameters_per_recipient_and_per_message() -> None:
    h = ready("DSN", "PIPELINING")
    h.session.sendmail(
        "a@x.org", ["b@y.org", "c+tag@y.org"], b"hi\r\n",
        notify={"b@y.org": ["SUCCESS", "FAILURE"], "c+tag@y.org": ["NEVER"]}, ret="hdrs", envid="QQ+1 x=y",
    )
    step = h.pending()
    assert step.sent == (
        b"MAIL FROM:<a@x.org> RET=HDRS ENVID=QQ+2B1+20x+3Dy\r\n"
        b"RCPT TO:<b@y.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@y.org\r\n"
        b"RCPT TO:<c+tag@y.org> NOTIFY=NEVER ORCPT=rfc822;c+2Btag@y.org\r\n"
        b"DATA\r\n"
    )


def test_dsn_notify_for_all_recipients() -> None:
    h = ready("DSN")
    h.session.sendmail("a@x.org", ["b@y.org"], b"hi\r\n", notify=["DELAY"], ret="FULL")
    step = h.pending()
    assert step.sent == b"MAIL FROM:<a@x.org> RET=FULL\r\n"
    assert h.feed(OK).sent == b"RCPT TO:<b@y.org> NOTIFY=DELAY ORCPT=rfc822;b@y.org\r\n"


@pytest.mark.parametrize(
    "options",
    [{"notify": ["NEVER", "SUCCESS"]}, {"notify": ["SOMETIMES"]}, {"notify": []}, {"ret": "BODY"}],
)
def test_invalid_dsn_options_raise(options: dict[str, object]) -> None:
    h = ready("DSN")
    with pytest.raises(LocalProtocolError):
        h.session.sendmail("a@x.org", ["b@y.org"], b"hi\r\n", **options)  # type: ignore[arg-type]
    assert h.pending().sent == b""


def test_dsn_without_server_support_raises() -> None:
    h = ready("PIPELINING")
    with pytest.raises(LocalProtocolError, match="DSN"):
        h.session.sendmail("a@x.org", ["b@y.org"], b"hi\r\n", notify=["FAILURE"])


# --- enhanced status codes (RFC 2034 / 3463) ----------------------------------------------------


def test_enhanced_codes_in_results_and_errors() -> None:
    h = ready("PIPELINING", "ENHANCEDSTATUSCODES")
    ticket = h.session.sendmail("a@x.org", ["b@y.org"], b"hi\r\n")
    h.pending()
    h.feed(b"250 2.1.0 sender ok\r\n" + b"550 5.1.1 <b@y.org>: user unknown\r\n" + b"554 5.5.1 no valid recipients\r\n")
    result = h.feed(b"250 2.0.0 reset\r\n").results[ticket]
    assert result.refused["b@y.org"].enhanced_code == "5.1.1"
    assert isinstance(result.error, RecipientsRefused)
    assert "5.1.1" in str(result.error)


# --- 452 too many recipients (RFC 5321 §4.5.3.1.10) -------------------------------------------


def test_452_recipients_retried_in_a_following_transaction_without_pipelining() -> None:
    h = ready()
    ticket = h.session.sendmail("a@x.org", ["b@y.org", "c@y.org", "d@y.org"], b"hi\r\n")
    h.pending()
    h.feed(OK)
    h.feed(OK)
    h.feed(b"452 4.5.3 too many recipients\r\n")
    assert h.feed(b"452 4.5.3 too many recipients\r\n").sent == b"DATA\r\n"
    h.feed(GO)
    step = h.feed(QUEUED)
    assert step.sent == b"MAIL FROM:<a@x.org>\r\n" and step.of(MessageSent) == ()
    assert h.feed(OK).sent == b"RCPT TO:<c@y.org>\r\n"
    assert h.feed(OK).sent == b"RCPT TO:<d@y.org>\r\n"
    assert h.feed(OK).sent == b"DATA\r\n"
    assert h.feed(GO).sent == b"hi\r\n.\r\n"
    result = h.feed(b"250 queued as Q2\r\n").results[ticket]
    assert result.ok and set(result.accepted) == {"b@y.org", "c@y.org", "d@y.org"} and result.refused == {}


def test_452_recipients_retried_pipelined() -> None:
    h = ready("PIPELINING")
    ticket = h.session.sendmail("a@x.org", ["b@y.org", "c@y.org"], b"hi\r\n")
    h.pending()
    h.feed(OK + OK + b"452 4.5.3 too many\r\n" + GO)
    step = h.feed(QUEUED)
    assert step.sent == b"MAIL FROM:<a@x.org>\r\nRCPT TO:<c@y.org>\r\nDATA\r\n"
    assert h.feed(OK + OK + GO).sent == b"hi\r\n.\r\n"
    result = h.feed(b"250 queued as Q2\r\n").results[ticket]
    assert result.ok and set(result.accepted) == {"b@y.org", "c@y.org"}


def test_452_again_in_the_retry_keeps_the_delivered_part() -> None:
    h = ready("PIPELINING")
    ticket = h.session.sendmail("a@x.org", ["b@y.org", "c@y.org"], b"hi\r\n")
    h.pending()
    h.feed(OK + OK + b"452 4.5.3 too many\r\n" + GO)
    h.feed(QUEUED)
    step = h.feed(OK + b"452 4.5.3 still too many\r\n" + b"554 5.5.1 no valid recipients\r\n")
    assert step.sent == b"RSET\r\n"
    result = h.feed(OK).results[ticket]
    # b got the message; c was deferred twice: a partial success, not a refused message.
    assert list(result.accepted) == ["b@y.org"]
    assert result.refused["c@y.org"].code == 452
    assert result.ok, result.error


# --- LMTP (RFC 2033) --------------------------------------------------------------------------------


def test_lmtp_one_reply_per_accepted_recipient() -> None:
    h = ready("PIPELINING", "ENHANCEDSTATUSCODES", lmtp=True)
    ticket = h.session.sendmail("a@x.org", ["b@y.org", "c@y.org", "d@y.org"], b"hi\r\n")
    step = h.pending()
    assert step.sent == (
        b"MAIL FROM:<a@x.org>\r\nRCPT TO:<b@y.org>\r\nRCPT TO:<c@y.org>\r\nRCPT TO:<d@y.org>\r\nDATA\r\n"
    )
    assert h.feed(OK + OK + NO_USER + OK + GO).sent == b"hi\r\n.\r\n"
    step = h.feed(b"250 2.0.0 b delivered\r\n")
    assert step.of(MessageSent) == () and step.state == "content"
    step = h.feed(b"452 4.2.2 d mailbox full\r\n")
    result = step.results[ticket]
    assert set(result.delivery) == {"b@y.org", "d@y.org"}
    assert result.delivery["b@y.org"].code == 250 and result.delivery["d@y.org"].code == 452
    assert list(result.accepted) == ["b@y.org"]
    assert {a: r.code for a, r in result.refused.items()} == {"c@y.org": 550, "d@y.org": 452}
    assert result.ok and step.state == "ready"


def test_lmtp_all_delivery_replies_in_one_feed() -> None:
    h = ready("PIPELINING", lmtp=True)
    ticket = h.session.sendmail("a@x.org", ["b@y.org", "c@y.org"], b"hi\r\n")
    h.pending()
    h.feed(OK + OK + OK + GO)
    result = h.feed(b"250 b ok\r\n550 c failed\r\n").results[ticket]
    assert list(result.accepted) == ["b@y.org"] and result.refused["c@y.org"].code == 550


def test_lmtp_every_delivery_refused() -> None:
    h = ready("PIPELINING", lmtp=True)
    ticket = h.session.sendmail("a@x.org", ["b@y.org"], b"hi\r\n")
    h.pending()
    h.feed(OK + OK + GO)
    result = h.feed(b"554 5.0.0 delivery failed\r\n").results[ticket]
    assert not result.ok and result.refused["b@y.org"].code == 554


def test_lmtp_never_chunks() -> None:
    h = ready("PIPELINING", "CHUNKING", lmtp=True)
    h.session.sendmail("a@x.org", ["b@y.org"], b"hi\r\n")
    step = h.pending()
    assert step.sent.endswith(b"DATA\r\n")
