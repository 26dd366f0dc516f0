"""The two test examples the README shows, kept here so they keep working."""

from email.message import EmailMessage

from smtp_fsm import SMTPClient
from smtp_fsm.testing import SessionStepper


def send_welcome(host: str, port: int) -> None:
    """The code under test: it sends a welcome mail."""
    msg = EmailMessage()
    msg["From"] = "shop@example.org"
    msg["To"] = "alice@example.net"
    msg["Subject"] = "Welcome"
    msg.set_content("Hello Alice!")
    with SMTPClient(host, port) as smtp:
        smtp.send_message(msg)


def test_my_code_sends_the_right_mail(smtp_server):
    send_welcome(smtp_server.host, smtp_server.port)

    [received] = smtp_server.messages
    assert received.mail_from == "shop@example.org"
    assert received.rcpt_tos == ("alice@example.net",)
    assert received.message["Subject"] == "Welcome"


def test_step_a_session_reply_by_reply():
    step = SessionStepper(local_hostname="client.example")
    step.session.sendmail("a@example.org", ["b@example.net"], b"Subject: hi\r\n\r\nhello\r\n")

    assert step.reply("220 mx.example ESMTP").sent == b"EHLO client.example\r\n"
    assert step.reply("250-mx.example", "250 PIPELINING").sent == (
        b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n")
    assert step.state == "data"
    step.reply("250 OK")
    step.reply("250 OK")
    assert step.reply("354 go ahead").sent == b"Subject: hi\r\n\r\nhello\r\n.\r\n"
    done = step.reply("250 2.0.0 queued as 42")
    assert step.state == "ready"
    assert done.events[0].result.ok
