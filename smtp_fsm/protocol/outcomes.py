"""A message's outcome from its replies: delivered, refused, not sent or uncertain.

The recorders (rules.py) note what each reply said; these functions decide
what the message's ``SendResult`` says when its transaction ends -- by its
final reply, by an RSET after a refusal, or cut short by the session's end --
and which error, if any, explains a refusal.
"""

from __future__ import annotations

from ..errors import DataRefused, RecipientsRefused, SenderRefused, SMTPError
from ..replies import Reply
from ..results import Outcome, SendResult
from ..transaction import Transaction
from .rules import completed, intermediate

_DELIVERED, _REFUSED = Outcome.DELIVERED, Outcome.REFUSED
#: Stands for the final reply that never came when DATA's content was not answered.
_NO_FINAL_REPLY = Reply(554, ("no final reply",))


def finish(tx: Transaction, state: str) -> SendResult:
    """The result of a transaction that ended in ``state`` with a final reply or an RSET."""
    result = tx.result
    if tx.round_ok and tx.sender_ok and not tx.chunk_failed and not tx.deferred and tx.earlier is None:
        # The common case, decided by the round's own flags: a final 2xx for accepted recipients.
        result.outcome = _DELIVERED
        return result
    for rcpt, reply in tx.deferred.items():
        result.refused[rcpt] = reply
    if tx.earlier is not None:
        settle_retry_round(tx)
    elif result.error is None:
        result.error = transaction_error(tx, state)
    result.outcome = _DELIVERED if result.error is None and result.accepted else _REFUSED
    return result


def probe(tx: Transaction, state: str) -> SendResult:
    """A message only probed (the session stopped after MAIL or RCPT): nothing of it was sent.

    ``accepted`` and ``refused`` say what the server answered; the outcome is ``NOT_SENT``
    unless the server refused the sender or every recipient (``REFUSED``, with the error).
    """
    result = tx.result
    for rcpt, reply in tx.deferred.items():
        result.refused[rcpt] = reply
    if not tx.sender_ok or (not tx.rcpt_outstanding and not result.accepted):
        result.error = transaction_error(tx, state)
    result.outcome = _REFUSED if result.error is not None else Outcome.NOT_SENT
    return result


def _data_refused(tx: Transaction) -> bool:
    """DATA got something other than 354 (or a BDAT chunk was refused)."""
    return tx.data_reply is not None and not intermediate(tx.data_reply)


def round_failure(tx: Transaction) -> Reply | None:
    """The reply that failed this round as a whole, or None when the round delivered."""
    if not tx.sender_ok:
        return tx.mail_reply
    if _data_refused(tx):
        return tx.data_reply
    if tx.final_reply is not None and not tx.round_ok:
        return tx.final_reply
    return None


def settle_retry_round(tx: Transaction) -> None:
    """After a 452 retry round: the earlier delivery stands; this round's failures refuse its recipients."""
    result = tx.result
    failure = round_failure(tx)
    if failure is not None:
        for rcpt in tx.recipients_round:
            if rcpt not in result.refused:
                result.accepted.pop(rcpt, None)
                result.refused[rcpt] = failure
        result.reply = tx.earlier
    result.error = None


def settle_cut_short(tx: Transaction, error: SMTPError, state: str) -> SendResult:
    """The session ended (``error``) before this message's final reply: record what became of it.

    A round the server had already refused as a whole is ``REFUSED`` whatever came after.
    Otherwise the recipients still waiting are ``UNCERTAIN`` once the round's content was
    handed out, else ``NOT_SENT``; a message that some final 2xx delivered first (an earlier
    452 round, LMTP's replies for some recipients) stays ``DELIVERED`` with those recipients
    in ``unfinished``.
    """
    result = tx.result
    if tx.resend:  # refused for the order of the commands (a BDAT window): the server took nothing of it
        tx.restart()
        result.error = error
        result.outcome = Outcome.NOT_SENT
        return result
    for rcpt, reply in tx.deferred.items():
        result.refused[rcpt] = reply
    if round_failure(tx) is not None or (tx.rcpt_outstanding == 0 and tx.accepted_count == 0):
        if tx.earlier is not None:
            settle_retry_round(tx)
            result.outcome = _DELIVERED
        else:
            result.error = transaction_error(tx, state) or error
            result.outcome = _REFUSED
        return result
    fate = Outcome.UNCERTAIN if tx.content_out else Outcome.NOT_SENT
    waiting = [rcpt for rcpt in tx.recipients_round if rcpt not in result.refused and rcpt not in result.delivery]
    delivered_now = any(completed(result.delivery[rcpt]) for rcpt in tx.recipients_round if rcpt in result.delivery)
    result.error = error
    if tx.earlier is None and not delivered_now:
        result.outcome = fate
        return result
    result.outcome = _DELIVERED
    for rcpt in waiting:
        result.accepted.pop(rcpt, None)
    result.unfinished = dict.fromkeys(waiting, fate)
    if not delivered_now:
        result.reply = tx.earlier
    return result


def transaction_error(tx: Transaction, state: str) -> SMTPError | None:
    """Why the message failed as a whole, or None when some recipient got it."""
    result = tx.result
    if not tx.sender_ok and tx.mail_reply is not None:
        return SenderRefused(tx.mail_reply, result.sender, state)
    if not result.accepted:
        if result.refused:
            return RecipientsRefused(dict(result.refused), state)
        if _data_refused(tx):
            assert tx.data_reply is not None
            return DataRefused(tx.data_reply, "DATA refused", state)
        return None
    if _data_refused(tx):
        assert tx.data_reply is not None
        return DataRefused(tx.data_reply, "DATA refused", state)
    final = result.reply
    if final is None and not tx.chunked:
        return DataRefused(_NO_FINAL_REPLY, "no final reply", state)
    if final is not None and not completed(final) and not result.delivery:
        return DataRefused(final, "message refused", state)
    return None
