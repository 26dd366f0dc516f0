"""What a reply means: the reply classes, the table's conditions, and what each reply records.

Everything here is a pure function of a reply and of what the session has
recorded so far (read through ``SessionView`` and ``TransactionView``); the
only writes are the recorders at the end, which note a reply's meaning on the
message it answers (accepted, deferred, refused) before the table decides.
Together with the rest of the protocol package, this is the only code besides
replies.py that reads ``Reply.code`` (tests/test_machine.py checks).
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable, Sized
from operator import attrgetter
from typing import TYPE_CHECKING, Protocol

from transitions import EventData

from ..auth import MAX_AUTH_COMMAND, Credentials, Mechanism, choose_mechanism
from ..extensions import Capabilities
from ..replies import Reply
from ..transaction import Pending, Transaction, same_envelope

#: The window's fallbacks are logged here (INFO): the session goes on, one message at a time.
log = logging.getLogger("smtp_fsm")

#: RFC 5321 §4.1.4: the replies to EHLO after which a client tries HELO.
EHLO_FALLBACK_CODES = frozenset({500, 501, 502, 504, 550})
#: RFC 5321 §3.8: "service not available, closing transmission channel", at any time.
SHUTDOWN_CODE = 421
#: RFC 5321 §4.5.3.1.10: "too many recipients"; those recipients go again in a
#: following transaction of the same message.
TOO_MANY_RECIPIENTS = 452


# --- reply classes (RFC 5321 §4.2: a client acts on the first digit) ----------------

#: 2xx: the command was done (220, 221, 235, 250...).  The parser admits only codes 200-599.
COMPLETED = frozenset(range(200, 300))
#: 3xx: go on (334 a SASL challenge, 354 send the content).
INTERMEDIATE = frozenset(range(300, 400))


def completed(reply: Reply) -> bool:
    """2xx: the command was done."""
    return reply.code in COMPLETED


def intermediate(reply: Reply) -> bool:
    """3xx: go on."""
    return reply.code in INTERMEDIATE


def shuts_down(reply: Reply) -> bool:
    """421: the server is closing the session, whatever was asked."""
    return reply.code == SHUTDOWN_CODE


# --- what the conditions read ----------------------------------------------------

class SessionView(Protocol):
    """What the conditions read from the session's model (_model.py implements it)."""

    lmtp: bool
    encrypted: bool
    loopback: bool
    starttls_policy: str
    allow_insecure_auth: bool
    pipelining: bool
    chunking: bool
    credentials: Credentials | None
    auth_mechanism: str | None
    authenticated: bool
    capabilities: Capabilities
    auth_mech: Mechanism | None
    auth_step: int
    auth_initial: bytes | None
    quit_after: str | None
    tx: Transaction | None
    next_tx: Transaction | None
    #: A refusal in the window may have left the server's transaction open: RSET before the next.
    rset_due: bool
    #: How many messages may be in flight now (``bdat_window``, or 1 once the server showed it needs that).
    window_limit: int
    #: The server wants BDAT only after the MAIL and RCPT replies are read: BDAT transactions in lockstep.
    bdat_lockstep: bool
    #: A BDAT sent in one group with its MAIL and RCPT was accepted: the server takes such groups.
    bdat_groups_proven: bool
    #: The last message's final reply was 2xx (so a 503 to the next one's MAIL is about the order).
    last_final_ok: bool

    @property
    def ahead(self) -> Sized:
        """A BDAT window: the messages in flight behind ``tx``, in the order their replies come."""

    def next_work_is_mail(self) -> bool: ...

    def next_queued_tx(self) -> Transaction | None:
        """The next queued work's transaction when it is a message, built already; else None."""

    def last_in_flight(self) -> Transaction | None:
        """The message sent last and not answered yet (the window's last, or ``tx``)."""


class TransactionView(Protocol):
    round_ok: bool
    sender_ok: bool
    accepted_count: int
    rcpt_outstanding: int
    chunk_failed: bool
    chunked: bool


def source_of(ev: EventData) -> str:
    """The state the transition being taken started from."""
    assert ev.transition is not None
    return str(ev.transition.source)


# Conditions run several times per message: these three accessors are the hot path, so at
# run time they are plain attribute reads (no ``cast`` call); the type checker sees their types.
if TYPE_CHECKING:
    def reply_of(ev: EventData) -> Reply:
        """The reply a trigger was fired with (its first argument)."""

    def _session(ev: EventData) -> SessionView: ...

    def _tx(ev: EventData) -> Transaction: ...
else:
    def reply_of(ev):
        """The reply a trigger was fired with (its first argument)."""
        return ev.args[0]

    _session = attrgetter("model")
    _tx = attrgetter("model.tx")


# --- conditions: setup -------------------------------------------------------------

def positive(ev: EventData) -> bool:
    """2xx."""
    return reply_of(ev).code in COMPLETED


def otherwise(ev: EventData) -> bool:
    """Any reply: the rows before this one took the ones they wanted (it names the "else" branch)."""
    return True


def service_ready(ev: EventData) -> bool:
    """2xx (220): the greeting, or the go-ahead for the TLS handshake."""
    return reply_of(ev).code in COMPLETED


def challenge(ev: EventData) -> bool:
    """3xx (334): the server sends a SASL challenge."""
    return reply_of(ev).code in INTERMEDIATE


def start_data(ev: EventData) -> bool:
    """3xx (354): send the content."""
    return reply_of(ev).code in INTERMEDIATE


def lmtp(ev: EventData) -> bool:
    """LMTP (RFC 2033): LHLO instead of EHLO, and one reply per recipient after the data."""
    return _session(ev).lmtp


def ehlo_unsupported(ev: EventData) -> bool:
    """EHLO refused with a code after which HELO is worth trying (not for LMTP)."""
    return reply_of(ev).code in EHLO_FALLBACK_CODES and not _session(ev).lmtp


def tls_required_missing(ev: EventData) -> bool:
    """starttls="required", not encrypted, and STARTTLS not offered (or EHLO refused)."""
    s = _session(ev)
    if s.starttls_policy != "required" or s.encrypted:
        return False
    return not (positive(ev) and s.capabilities.starttls)


def tls_required(ev: EventData) -> bool:
    """starttls="required" and the link is not encrypted yet."""
    s = _session(ev)
    return s.starttls_policy == "required" and not s.encrypted


def starttls_offered(ev: EventData) -> bool:
    """The server offers STARTTLS, the link is not encrypted yet, and the caller did not say starttls="never"."""
    s = _session(ev)
    return not s.encrypted and s.starttls_policy != "never" and s.capabilities.starttls


def auth_wanted(ev: EventData) -> bool:
    """The caller gave credentials and the session has not authenticated yet."""
    s = _session(ev)
    return s.credentials is not None and not s.authenticated


def auth_in_clear(ev: EventData) -> bool:
    """Credentials would cross an unencrypted link to a host that is not loopback."""
    s = _session(ev)
    return auth_wanted(ev) and not s.encrypted and not s.loopback and not s.allow_insecure_auth


def mechanism_for(s: SessionView) -> Mechanism | None:
    """The SASL mechanism to use: the caller's choice if offered, else the best offered one."""
    if s.credentials is None:
        return None
    return choose_mechanism(s.capabilities.auth_mechanisms, s.credentials, s.auth_mechanism)


def auth_unavailable(ev: EventData) -> bool:
    """Credentials were given, but the server offers no AUTH mechanism the client can use with them."""
    return auth_wanted(ev) and mechanism_for(_session(ev)) is None


def challenge_valid(ev: EventData) -> bool:
    """The 334 text is base64 and the mechanism expects another step (or the initial
    response that was too long for the AUTH line is owed, RFC 4954 §4)."""
    s = _session(ev)
    if s.auth_mech is None or (s.auth_step >= s.auth_mech.max_steps and s.auth_initial is None):
        return False
    try:
        base64.b64decode(reply_of(ev).lines[0].strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def auth_command(mech: Mechanism, initial: bytes | None) -> tuple[str, bytes | None]:
    """The AUTH command's argument, and the initial response owed to an empty 334 instead.

    RFC 4954 §4: an initial response that would make the AUTH command longer than
    SMTP's line limit MUST NOT be sent with it; it answers the empty 334 instead.
    """
    if initial is None:
        return mech.name, None
    argument = f"{mech.name} {base64.b64encode(initial).decode('ascii') or '='}"
    if len(f"AUTH {argument}\r\n") <= MAX_AUTH_COMMAND:
        return argument, None
    return mech.name, initial


#: Where a session may be told to stop (``quit_after``), as swaks' ``--quit-after`` names them:
#: after the greeting, the first EHLO, the TLS handshake, AUTH, MAIL FROM, the RCPT TOs.
STOP_POINTS = ("banner", "ehlo", "tls", "auth", "mail", "rcpt")


def _stop_at(point: str) -> Callable[[EventData], bool]:
    def condition(ev: EventData) -> bool:
        return _session(ev).quit_after == point

    condition.__name__ = condition.__qualname__ = f"quit_after_{point}"
    condition.__doc__ = f"The session was told to stop here (quit_after={point!r}): QUIT, nothing more."
    return condition


quit_after_banner, quit_after_ehlo, quit_after_tls, quit_after_auth, quit_after_mail, quit_after_rcpt = (
    _stop_at(point) for point in STOP_POINTS)


# --- conditions: the mail transaction ----------------------------------------------------

_PROBES = frozenset({"mail", "rcpt"})


def uses_pipelining(pipelining: bool, caps: Capabilities) -> bool:
    """RFC 2920: the caller allows it and the server offers it."""
    return pipelining and caps.pipelining


def uses_chunking(chunking: bool, lmtp: bool, caps: Capabilities | None) -> bool:
    """RFC 3030 BDAT: the caller allows it and the server offers it; not for LMTP, whose
    per-recipient replies (RFC 2033 §4.2) are defined here for DATA."""
    return caps is not None and chunking and not lmtp and caps.chunking


def pipelined(ev: EventData) -> bool:
    """PIPELINING in use: a round's commands go out together, their replies are read after
    (not when the session stops after MAIL or RCPT: those are probes, sent one by one; nor for BDAT
    once the server showed it wants BDAT only after the MAIL and RCPT replies, RFC 3030 §2)."""
    s = _session(ev)
    if not uses_pipelining(s.pipelining, s.capabilities) or s.quit_after in _PROBES:
        return False
    return not (s.bdat_lockstep and uses_chunking(s.chunking, s.lmtp, s.capabilities))


def chunking(ev: EventData) -> bool:
    """CHUNKING in use: the content goes in BDAT chunks, not after DATA."""
    s = _session(ev)
    return uses_chunking(s.chunking, s.lmtp, s.capabilities)


def recipients_left(ev: EventData) -> bool:
    """Lockstep: recipients of this round still to be sent RCPT TO."""
    tx = _tx(ev)
    return tx.rcpts_sent < len(tx.recipients_round)


def nobody_accepted(ev: EventData) -> bool:
    """Every recipient of this round answered, and none was accepted."""
    tx = _tx(ev)
    return tx.rcpt_outstanding == 0 and tx.accepted_count == 0


def last_chunk_next(ev: EventData) -> bool:
    """The next BDAT chunk is the last one (BDAT ... LAST)."""
    return _tx(ev).chunks_left == 1


def recipients_accepted(ev: EventData) -> bool:
    """The sender and at least one recipient were accepted."""
    tx = _tx(ev)
    return tx.sender_ok and tx.accepted_count > 0


def pipeline_next(ev: EventData) -> bool:
    """PIPELINING in use and another message is queued: send its group with this content."""
    s = _session(ev)
    return s.next_work_is_mail() and uses_pipelining(s.pipelining, s.capabilities) and not _tx(ev).deferred


def retry_deferred(ev: EventData) -> bool:
    """Some recipients got 452 and this round delivered to others: send the message again to them."""
    tx = _tx(ev)
    return bool(tx.deferred) and tx.round_ok


def transaction_over(ev: EventData) -> bool:
    """Nothing follows this final reply: no 452 retry is due and no BDAT chunk was refused."""
    tx = _tx(ev)
    return not (tx.deferred and tx.round_ok) and not (tx.chunked and tx.chunk_failed)


def chunk_refused(ev: EventData) -> bool:
    """A chunk of a BDAT transaction was refused (even if BDAT LAST then got 250): RSET, so the
    next transaction starts clean (RFC 3030 §2: no more chunks after a failed one)."""
    tx = _tx(ev)
    return tx.chunked and tx.chunk_failed


def window_clear(ev: EventData) -> bool:
    """No BDAT window in flight behind this message, and no RSET due after a refusal in one."""
    s = _session(ev)
    return not s.ahead and not s.rset_due


def window_behind(ev: EventData) -> bool:
    """A BDAT window: messages sent after this one are in flight still (their replies come next)."""
    return bool(_session(ev).ahead)


def joins_window(s: SessionView) -> bool:
    """The window has room (and no refusal in it) for the next queued message, one whose MAIL says
    the same as the last one's in flight but for SIZE.  A server that keeps a MAIL open after refusing
    its BDAT (Exim, when no recipient was accepted) takes the next message's RCPTs and content into
    it: harmless with the same sender and parameters, a wrong envelope with others."""
    if s.rset_due or len(s.ahead) + 1 >= s.window_limit:
        return False
    follower = s.next_queued_tx()
    if follower is None:
        return False
    last = s.last_in_flight()
    return last is None or same_envelope(last.mail_line, follower.mail_line)


def window_room(ev: EventData) -> bool:
    """A BDAT window is in flight and the next queued message may join it (``joins_window``)."""
    s = _session(ev)
    tx = s.tx
    return tx is not None and tx.grouped and joins_window(s)


def resend_due(ev: EventData) -> bool:
    """The server refused this message for the order of the commands (a 503 to a MAIL sent ahead, a
    BDAT it wanted after the MAIL and RCPT replies), not for itself: it goes again, never refused."""
    return _tx(ev).resend


def rset_due(ev: EventData) -> bool:
    """A refusal in the window may have left the server's transaction open: RSET before the next."""
    return _session(ev).rset_due


def window_reset(ev: EventData) -> bool:
    """This RSET closes a window after a refusal in it (no message waits for its reply)."""
    s = _session(ev)
    return s.rset_due and s.tx is None


def abandoning(ev: EventData) -> bool:
    """This RSET ends a failed transaction (not one the caller asked for)."""
    return _session(ev).tx is not None


# --- what each reply records, before its trigger (if any) fires ------------------------------

def record_ehlo(s: SessionView, pending: Pending, reply: Reply) -> None:
    """A 2xx to EHLO/LHLO lists the extensions (RFC 5321 §4.1.1.1)."""
    if reply.code in COMPLETED:
        s.capabilities = Capabilities.from_reply(reply)


#: RFC 5321 §4.2.3: "bad sequence of commands"; with an RFC 3463 code of class x.5.x (protocol) the
#: same: a command refused for where it came, not for what it said.
BAD_SEQUENCE = 503


def out_of_order(reply: Reply) -> bool:
    """The reply refuses a command for the order of the commands (503, or a 5.5.x/4.5.x code)."""
    if reply.code == BAD_SEQUENCE:
        return True
    enhanced = reply.enhanced_code
    return reply.code >= 400 and enhanced is not None and enhanced[1:4] == ".5."


def _refused_for_order(s: SessionView, tx: Transaction) -> None:
    """``tx`` goes again after an RSET (once: a second refusal is its own)."""
    if not tx.resent:
        tx.resend = True
        s.rset_due = True


def record_mail(s: SessionView, pending: Pending, reply: Reply) -> None:
    tx = pending.tx
    assert tx is not None
    tx.mail_reply = reply
    if reply.code not in COMPLETED:
        tx.sender_ok = False
        if tx.ahead and out_of_order(reply):
            # the MAIL went out behind another message: the server's transaction was still open (a
            # refused chunk before), or it wants each BDAT group to end a round trip (then: one at a time)
            _refused_for_order(s, tx)
            if s.window_limit > 1:
                s.window_limit = 1
                if s.last_final_ok:
                    log.info("the server refused a MAIL sent behind a delivered message (%s): "
                             "one message in flight from now on", reply)
                else:  # (Exim counts each such 503 a protocol error, and drops the connection at the 4th)
                    log.info("the server kept a refused transaction open (%s to the MAIL sent behind it): "
                             "one message in flight from now on", reply)


def record_rcpt(s: SessionView, pending: Pending, reply: Reply) -> None:
    """2xx accepted; 452 deferred to a following round (RFC 5321 §4.5.3.1.10); else refused."""
    tx = pending.tx
    rcpt = pending.rcpt
    assert tx is not None and rcpt is not None
    tx.rcpt_outstanding -= 1
    if reply.code in COMPLETED:
        tx.result.accepted[rcpt] = reply
        tx.accepted_count += 1
        tx.accepted_round.append(rcpt)
    elif reply.code == TOO_MANY_RECIPIENTS:
        tx.deferred[rcpt] = reply
    else:
        tx.result.refused[rcpt] = reply


def _chunk_refused_for_order(s: SessionView, tx: Transaction) -> None:
    """A BDAT sent with its MAIL and RCPT, both accepted, refused for the order: the server reads RFC
    3030 §2 as "BDAT after the MAIL and RCPT replies" -- unless such a group was accepted before.
    The first refused chunk tells (the ones after a refused chunk are refused for following it)."""
    first = tx.data_reply if tx.data_reply is not None else tx.final_reply
    if (first is not None and tx.grouped and tx.sender_ok and not tx.result.refused and not tx.deferred
            and out_of_order(first) and not s.bdat_groups_proven):
        _refused_for_order(s, tx)
        if s.bdat_lockstep:
            return  # (the window's other groups, refused alike, tell nothing new)
        s.bdat_lockstep = True
        s.window_limit = 1
        log.info("the server refused a BDAT sent with its MAIL and RCPT (%s): BDAT after their "
                 "replies, one message in flight from now on", first)


def record_chunk(s: SessionView, pending: Pending, reply: Reply) -> None:
    """RFC 3030 §2: a refused chunk fails the transaction, whatever BDAT LAST gets."""
    tx = pending.tx
    assert tx is not None
    if reply.code not in COMPLETED:
        tx.chunk_failed = True
        tx.data_reply = tx.data_reply or reply
        _chunk_refused_for_order(s, tx)


def record_data(s: SessionView, pending: Pending, reply: Reply) -> None:
    assert pending.tx is not None
    pending.tx.data_reply = reply


def record_end(s: SessionView, pending: Pending, reply: Reply) -> None:
    """The reply to the end of the data: one per accepted recipient for LMTP, the last decides."""
    tx = pending.tx
    assert tx is not None
    ok = reply.code in COMPLETED
    if pending.rcpt is not None:
        # RFC 2033 §4.2: one reply per accepted recipient, in RCPT order.
        tx.result.delivery[pending.rcpt] = reply
        if ok:
            tx.round_ok = True
        else:
            tx.result.accepted.pop(pending.rcpt, None)
            tx.result.refused[pending.rcpt] = reply
    tx.ends_due -= 1
    if tx.ends_due:
        return
    tx.result.reply = tx.final_reply = reply
    if tx.resend and ok:
        # Its MAIL was refused for the order, yet the server took the content: its RCPTs joined the
        # transaction left open before it.  It was delivered: sending it again would deliver it twice.
        tx.resend = False
        tx.sender_ok = True
    if pending.rcpt is None:
        # A refused sender or chunk fails the round even when BDAT LAST got 250.
        tx.round_ok = ok and tx.accepted_count > 0 and tx.sender_ok and not tx.chunk_failed
    if tx.chunked:
        if not ok:
            tx.chunk_failed = True
            _chunk_refused_for_order(s, tx)
        elif tx.grouped:
            s.bdat_groups_proven = True
    s.last_final_ok = ok


Recorder = Callable[[SessionView, Pending, Reply], None]
