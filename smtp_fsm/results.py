"""What a sent message came to: :class:`SendResult`, one per message, and its :class:`Outcome`."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from .errors import SMTPError
from .replies import Reply


class Outcome(StrEnum):
    """The four fates of a message; every :class:`SendResult` has exactly one.

    The line between ``NOT_SENT`` and ``UNCERTAIN`` is the first byte of the
    message's content handed out by ``data_to_send()``: from then on the server
    may have it, and only its final reply can say.  A message lost in that window
    (RFC 1047) is ``UNCERTAIN``, never ``NOT_SENT``, so resending it is the
    caller's explicit choice.
    """

    #: A final 2xx came after the data (some recipients may still be in ``refused``).
    DELIVERED = "delivered"
    #: The server refused it: the sender, every recipient, or the data.
    REFUSED = "refused"
    #: None of its content was handed to the transport: safe to send again.
    NOT_SENT = "not_sent"
    #: Its content was handed out and no final reply came: it may have been delivered.
    UNCERTAIN = "uncertain"


@dataclass
class SendResult:
    """The outcome of one message.

    ``accepted`` and ``refused`` map each recipient (as given) to the server's
    reply to its RCPT (for LMTP, a recipient accepted at RCPT but refused at
    delivery moves to ``refused`` with the delivery reply).  ``reply`` is the
    final reply to the data (its text usually carries the queue id);
    ``delivery`` holds LMTP's per-recipient replies after the data.  ``error``
    is set when the message as a whole did not go (refused, or cut short by the
    session's end: then ``outcome`` says whether its content went out), and on a
    message delivered to some recipients before the session ended (see ``unfinished``).
    """

    sender: str
    recipients: tuple[str, ...]
    accepted: dict[str, Reply] = field(default_factory=dict)
    refused: dict[str, Reply] = field(default_factory=dict)
    reply: Reply | None = None
    delivery: dict[str, Reply] = field(default_factory=dict)
    error: SMTPError | None = None
    outcome: Outcome = Outcome.NOT_SENT
    #: Recipients that the session's end left without a final reply, each ``NOT_SENT`` or
    #: ``UNCERTAIN``, in a message ``DELIVERED`` to others first: an LMTP server that answered
    #: for some recipients only, or a 452 retry round cut short.  Empty otherwise.
    unfinished: dict[str, Outcome] = field(default_factory=dict)

    @property
    def smtplib_refused(self) -> dict[str, tuple[int, bytes]]:
        """``refused`` in the shape smtplib's ``sendmail`` returns and its ``SMTPRecipientsRefused``
        carries: ``{recipient: (code, text as bytes)}``, the text's lines joined by newlines."""
        return {addr: (reply.code, reply.text.encode("utf-8"))
                for addr, reply in self.refused.items()}

    @property
    def ok(self) -> bool:
        """True when the message was delivered (to at least one recipient)."""
        return self.outcome is Outcome.DELIVERED

    def __repr__(self) -> str:
        state = "ok" if self.ok else f"{self.outcome}: {self.error}"
        return (
            f"<SendResult {state}; accepted={list(self.accepted)} refused="
            f"{ {addr: reply.code for addr, reply in self.refused.items()} } reply={self.reply}>"
        )
