"""What a sent message came to: :class:`SendResult`, one per message."""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import SMTPError
from .replies import Reply


@dataclass
class SendResult:
    """The outcome of one message.

    ``accepted`` and ``refused`` map each recipient (as given) to the server's
    reply to its RCPT (for LMTP, a recipient accepted at RCPT but refused at
    delivery moves to ``refused`` with the delivery reply).  ``reply`` is the
    final reply to the data (its text usually carries the queue id);
    ``delivery`` holds LMTP's per-recipient replies after the data.  ``error``
    is set when the message as a whole failed.
    """

    sender: str
    recipients: tuple[str, ...]
    accepted: dict[str, Reply] = field(default_factory=dict)
    refused: dict[str, Reply] = field(default_factory=dict)
    reply: Reply | None = None
    delivery: dict[str, Reply] = field(default_factory=dict)
    error: SMTPError | None = None

    @property
    def ok(self) -> bool:
        """True when the message was taken for at least one recipient."""
        return self.error is None and bool(self.accepted)

    def __repr__(self) -> str:
        state = "ok" if self.ok else f"failed: {self.error}"
        return (
            f"<SendResult {state}; accepted={list(self.accepted)} refused="
            f"{ {addr: reply.code for addr, reply in self.refused.items()} } reply={self.reply}>"
        )
