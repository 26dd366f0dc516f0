"""The sans-IO engine under trio: one message over STARTTLS (required), a deadline on every reply.

The engine has no I/O and no clock, so this file is the whole transport: a trio TCP stream,
wrapped in ``trio.SSLStream`` when the engine asks for the handshake (the ``StartTLS``
event), and a per-reply deadline restarted whenever ``session.replies_received`` moves
(RFC 5321 §4.5.3.2: 5 minutes, 10 for the reply to the end of the data).

Run it on its own (``python examples/trio_starttls.py``): it starts a local STARTTLS server
with a throwaway CA and sends it a message.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from email.message import Message
from typing import assert_never

import trio

import smtp_fsm
from smtp_fsm.session import END_OF_DATA

#: A safety net on the loop: one message takes a few dozen turns; the engine ends every session long before.
MAX_TURNS = 10_000


async def send(host: str, port: int, sender: str, recipients: str | Iterable[str], message: bytes | str | Message,
               context: ssl.SSLContext, *, server_hostname: str | None = None,
               timeout: float = 300.0, data_timeout: float = 600.0) -> smtp_fsm.SendResult:
    """Send one message with STARTTLS required; returns its SendResult, whatever happened after the connect."""
    with trio.fail_after(timeout):
        tcp = await trio.open_tcp_stream(host, port)
    stream: trio.abc.Stream = tcp
    session = smtp_fsm.ClientSession(local_hostname=smtp_fsm.ehlo_name(tcp.socket), starttls="required")
    ticket = session.sendmail(sender, recipients, message)
    session.quit()
    result: smtp_fsm.SendResult | None = None
    progress: tuple[int, str | None] | None = None  # what the clock was last started for
    started = 0.0
    try:
        for _turn in range(MAX_TURNS):
            if (session.replies_received, session.awaiting) != progress:  # a reply came, or another is awaited
                progress, started = (session.replies_received, session.awaiting), trio.current_time()
            limit = data_timeout if session.awaiting == END_OF_DATA else timeout
            with trio.move_on_at(started + limit) as deadline:
                try:
                    if out := session.data_to_send():
                        await stream.send_all(out)
                    event = session.next_event()
                    match event:
                        case smtp_fsm.NEED_DATA:
                            session.receive_data(await stream.receive_some())  # b"": the server closed
                        case smtp_fsm.StartTLS():
                            stream = trio.SSLStream(stream, context, server_hostname=server_hostname or host)
                            await stream.do_handshake()
                            session.tls_established()
                        case smtp_fsm.MessageSent(ticket=done, result=sent) if done == ticket:
                            result = sent
                        case smtp_fsm.Closed():
                            assert result is not None  # every queued message has its MessageSent before Closed
                            return result
                        case smtp_fsm.SessionReady() | smtp_fsm.Authenticated() | smtp_fsm.MessageSent():
                            pass
                        case smtp_fsm.CommandDone():  # (only noop() and rset() make these)
                            pass
                        case _:
                            assert_never(event)
                except smtp_fsm.SMTPError:  # raised once; the results and Closed follow
                    continue
                except (trio.BrokenResourceError, OSError) as exc:  # a reset, a failed handshake
                    # trio raises BrokenResourceError *from* the real error (the ssl.SSLError, the reset):
                    # hand the engine that, so its TLSError (or SMTPError) is chained from it.
                    session.close(exc.__cause__ or exc)
            if deadline.cancelled_caught:
                session.close(TimeoutError(f"{session.awaiting or session.state}: nothing within {limit:g} s"))
        raise RuntimeError(f"the session did not end in {MAX_TURNS} turns")
    finally:  # no close_notify: the SMTP session is over (or broken), and a close must not wait
        await trio.aclose_forcefully(stream)


if __name__ == "__main__":
    from smtp_fsm.testing.servers import LocalSMTPServer, make_test_tls

    tls = make_test_tls("127.0.0.1")
    with LocalSMTPServer(starttls_context=tls.server_context, require_starttls=True) as server:
        outcome = trio.run(send, server.host, server.port, "alice@example.org", ["bob@example.org"],
                           b"Subject: trio\r\n\r\nsent by the sans-IO engine under trio\r\n", tls.client_context)
        for received in server.messages:
            print(f"received {received.message['Subject']!r} from {received.mail_from} "
                  f"to {', '.join(received.rcpt_tos)}; STARTTLS: {received.peer_tls}")
    print(f"outcome: {outcome.outcome}")
