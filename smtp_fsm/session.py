"""The sans-IO engine: bytes in, events and bytes out, decisions from machine.py.

``ClientSession`` never touches a socket, a clock or a thread.  The caller
feeds it what the server sent (``receive_data``; ``b""`` when the server
closed), writes what ``data_to_send`` returns, and reads ``next_event`` until
it says ``NEED_DATA``.  Work is queued with ``sendmail``, ``send_message``,
``send_many``, ``noop``, ``rset`` and ``quit``; each returns a ticket, and the
outcome comes back as an event carrying that ticket.

This module keeps the bookkeeping -- the commands in flight, the recipients'
replies, the queue of work -- and implements the table's actions as "encode
this command and queue it".  Which action runs when is the table's business.
"""

from __future__ import annotations

import base64
import logging
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from email.message import Message
from functools import partial
from typing import Any, Literal, cast

from transitions import EventData, MachineError

from . import machine as table
from .auth import MAX_AUTH_COMMAND, Credentials, Mechanism, choose_mechanism
from .commands import check_ehlo_name, command_line
from .errors import (
    AuthenticationError,
    LocalProtocolError,
    RemoteProtocolError,
    ServerDisconnected,
    SMTPError,
    SMTPReplyError,
    TLSUnavailable,
)
from .events import (
    NEED_DATA,
    Authenticated,
    Closed,
    CommandDone,
    Event,
    MessageSent,
    SessionReady,
    StartTLS,
)
from .extensions import Capabilities
from .machine import reply_of, source_of
from .message import envelope_from_headers
from .replies import Reply, ReplyParser
from .results import Outcome, SendResult
from .trace import MASK, TraceStep
from .transaction import (
    Pending,
    Submission,
    Transaction,
    Work,
    build_transaction,
    credentials_from,
    settle_cut_short,
    settle_retry_round,
    transaction_error,
)

log = logging.getLogger("smtp_fsm")

StartTLSPolicy = Literal["opportunistic", "required", "never"]
STARTTLS_POLICIES = ("opportunistic", "required", "never")
DEFAULT_CHUNK_SIZE = 1 << 20
_MACHINE_EVENTS = table.MACHINE.events
# Read per reply or per message: module globals are cheaper than attribute look-ups.
_DELIVERED, _REFUSED = Outcome.DELIVERED, Outcome.REFUSED
_ENDED, _READY, _TLS_HANDSHAKE = table.FINAL_STATES, table.READY, table.TLS_HANDSHAKE
#: What ``awaiting`` calls the reply to the end of a message's data ("." after DATA, or BDAT LAST).
END_OF_DATA = "end of data"
_AWAITED = {"GREETING": "greeting", "MAIL": "MAIL FROM", "RCPT": "RCPT TO", "END": END_OF_DATA}
#: Commands in flight that carry a message's content: BDAT chunks and the end of the data.
_CONTENT_VERBS = frozenset({"BDAT", "END"})


class ClientSession:
    """One SMTP (or LMTP) client session, sans-IO, driven by the protocol table.

    ``encrypted`` and ``loopback`` are facts only the caller can know: whether
    the transport is already TLS (implicit TLS) and whether the peer is a
    loopback address.  AUTH over an unencrypted link to a peer that is not
    loopback is refused unless ``allow_insecure_auth`` is set.
    """

    def __init__(
        self,
        *,
        local_hostname: str | None = None,
        lmtp: bool = False,
        encrypted: bool = False,
        loopback: bool = False,
        starttls: StartTLSPolicy = "opportunistic",
        username: str | None = None,
        password: str | None = None,
        oauth_token: str | None = None,
        auth_mechanism: str | None = None,
        allow_insecure_auth: bool = False,
        pipelining: bool = True,
        chunking: bool = True,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        trace: bool = False,
    ) -> None:
        if starttls not in STARTTLS_POLICIES:
            raise LocalProtocolError(f"starttls must be one of {STARTTLS_POLICIES}, not {starttls!r}")
        if chunk_size < 1:
            raise LocalProtocolError("chunk_size must be positive")
        self.local_hostname = check_ehlo_name(local_hostname or "[127.0.0.1]")
        self.lmtp = lmtp
        self.encrypted = encrypted
        self.loopback = loopback
        self.starttls_policy: str = starttls
        self.allow_insecure_auth = allow_insecure_auth
        self.pipelining = pipelining
        self.chunking = chunking and not lmtp  # LMTP's per-recipient replies are defined for DATA here
        self.chunk_size = chunk_size
        self.credentials = credentials_from(username, password, oauth_token)
        self.auth_mechanism = auth_mechanism.upper() if auth_mechanism else None
        if self.auth_mechanism is not None:
            choose_mechanism((), Credentials(""), self.auth_mechanism)  # validates the name
        self.authenticated = False
        self.auth_mech: Mechanism | None = None
        self.auth_step = 0
        self.capabilities = Capabilities()
        self.greeting: Reply | None = None
        self.state: str = table.INITIAL  # moved by the table's rows (machine.py) from here on

        self._parser = ReplyParser()
        self._out: list[bytes] = []
        self._inflight: deque[Pending] = deque([Pending("GREETING", table.REPLY_TRIGGERS["GREETING"])])
        self._events: deque[Event | SMTPError] = deque()
        self._work: deque[Work] = deque()
        self._tickets = 0
        self._caps_final = False
        self._tx: Transaction | None = None
        self._next_tx: Transaction | None = None
        self._command_ticket = 0
        self._error: SMTPError | None = None
        self._close_reply: Reply | None = None
        self._eof = False
        self._quit_queued = False
        self._debug = False  # log.isEnabledFor(DEBUG), read at each entry point
        self._unwritten = 0  # commands in flight whose bytes data_to_send has not handed out yet
        self._content_queued: list[Transaction] = []  # messages whose content is in _out, not handed out yet
        self._auth_initial: bytes | None = None  # an initial response too long for the AUTH line, owed at 334
        #: Complete replies read so far; drivers restart their per-reply deadline when it moves.
        self.replies_received = 0
        self.trace: list[TraceStep] | None = [] if trace else None
        self._trace_sent: list[bytes] = []
        self._trace_events: list[str] = []
        self._trace_triggers: list[str] = []

    # -- the I/O surface ------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the server; ``b""`` means the server closed the connection."""
        if self._eof:
            raise LocalProtocolError("receive_data called after the connection was reported closed")
        self._debug = log.isEnabledFor(logging.DEBUG)  # once per call, not per reply
        if not data:
            self._eof = True
            if self.state not in table.FINAL_STATES:
                self._step(None, "connection closed", partial(self._fire, "connection_lost", None))
            return
        if self.state in table.FINAL_STATES:
            return
        if self.state == table.TLS_HANDSHAKE:
            self._injected(data)
            return
        parser = self._parser
        replies = parser.feed(data)
        count = len(replies)
        tracing = self.trace is not None
        for index, reply in enumerate(replies):
            if tracing:
                self._step(reply, "", partial(self._handle_reply, reply))
            else:
                self._handle_reply(reply)
            state = self.state
            if state in _ENDED:
                break
            if state == _TLS_HANDSHAKE and (index + 1 < count or parser.has_partial or parser.error):
                self._injected(b"".join(r.to_bytes() for r in replies[index + 1 :]))
                break
            if state == _READY and self._work:
                # Queued work starts at once, as it would had this reply come alone: what the
                # replies after it in this read meet does not depend on where TCP split them.
                self._dispatch()
        # Replies completed before bad bytes were handled first (a 250 that accepted a
        # message is never lost to the garbage after it); then the bad bytes end the session.
        if parser.error is not None and self.state not in table.FINAL_STATES:
            self._step(None, "broken reply", partial(self._fire, "protocol_error", None, parser.error))

    def data_to_send(self) -> bytes:
        """The bytes to write to the server now (possibly empty).

        From here on, a message whose content is in these bytes may reach the server:
        if no final reply comes, its outcome is ``uncertain``, never ``not_sent``.
        """
        self._unwritten = 0
        if not self._out:
            return b""
        if self._content_queued:
            for tx in self._content_queued:
                tx.content_out = True
            self._content_queued.clear()
        out = self._out
        self._out = []
        return out[0] if len(out) == 1 else b"".join(out)

    def next_event(self) -> Event:
        """The next event, ``NEED_DATA``, or raises the error that ended the session."""
        if self._events:
            item = self._events.popleft()
            if isinstance(item, SMTPError):
                raise item
            return item
        if self.state == table.CLOSED:
            return Closed(self._close_reply)
        if self.state == table.FAILED and self._error is not None:
            raise self._error
        return NEED_DATA

    def tls_established(self) -> None:
        """Report that the TLS handshake the ``StartTLS`` event asked for is done."""
        if self.state != table.TLS_HANDSHAKE:
            raise LocalProtocolError(f"tls_established() called in state {self.state!r}")
        self.encrypted = True
        self._step(None, "TLS established", partial(self._fire, "tls_established", None))

    def close(self, reason: SMTPError | None = None) -> None:
        """Release the engine: it takes no more input or work.

        Messages not finished yet get their ``MessageSent`` now (``uncertain`` when their
        content was handed out, else ``not_sent``), with ``reason`` (why the caller gave up:
        a timeout, say) as their error; ``next_event`` still hands them out.
        """
        self._eof = True
        self._quit_queued = True
        self._drop_unsent_output()
        if self._tx is not None or self._next_tx is not None or self._work:
            self._settle_unfinished(reason or SMTPError(f"the session was closed in state {self.state!r}"))

    @property
    def is_closed(self) -> bool:
        return self.state in table.FINAL_STATES

    @property
    def error(self) -> SMTPError | None:
        """The error that ended the session, once it has ended with one (else None)."""
        return self._error

    @property
    def awaiting(self) -> str | None:
        """What the oldest reply awaited answers ("greeting", "EHLO", "MAIL FROM", "RCPT TO", "DATA",
        ``END_OF_DATA``, "QUIT", ...), or None when nothing is awaited.

        Drivers name it in a timeout error, and give ``END_OF_DATA`` their ``data_timeout``:
        RFC 5321 §4.5.3.2.6 gives that reply 10 minutes, because a client that gives up
        earlier is what creates duplicates.
        """
        inflight = self._inflight
        if not inflight:
            return None
        verb = inflight[0].verb
        return _AWAITED.get(verb, verb)

    @property
    def buffered(self) -> int:
        """Bytes held from the server that are not yet a complete reply (bounded)."""
        return self._parser.buffered

    # -- work -----------------------------------------------------------------

    def sendmail(
        self,
        from_addr: str,
        to_addrs: str | Iterable[str],
        msg: bytes | str | Message,
        *,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
        notify: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
        ret: str | None = None,
        envid: str | None = None,
    ) -> int:
        """Queue one message; returns its ticket (``MessageSent.ticket``)."""
        submission, tx = self._submission(from_addr, to_addrs, msg, mail_options=mail_options,
                                          rcpt_options=rcpt_options, notify=notify, ret=ret, envid=envid)
        return self._queue("mail", submission, tx)

    def _submission(
        self, from_addr: str, to_addrs: str | Iterable[str], msg: bytes | str | Message, **options: Any
    ) -> tuple[Submission, Transaction | None]:
        """Check a message against the capabilities once known (the syntax alone before): nothing
        invalid is queued.  Recipients given twice are sent once.  ``options`` are sendmail's
        keywords, named and typed there."""
        recipients = tuple(dict.fromkeys((to_addrs,) if isinstance(to_addrs, str) else to_addrs))
        if not recipients:
            raise LocalProtocolError("no recipients given")
        ret = options.get("ret")
        submission = Submission(
            from_addr, recipients, msg, options.get("notify"), ret.upper() if ret else None, options.get("envid"),
            tuple(options.get("mail_options", ())), tuple(options.get("rcpt_options", ())),
        )
        self._check_open()
        tx = build_transaction(submission, self.capabilities if self._caps_final else None, self.chunking,
                               self.chunk_size)
        return submission, (tx if self._caps_final else None)

    def send_message(
        self,
        msg: Message,
        from_addr: str | None = None,
        to_addrs: str | Iterable[str] | None = None,
        **options: Any,
    ) -> int:
        """Queue an ``email`` message; the envelope comes from its headers unless given."""
        sender, recipients = envelope_from_headers(msg)
        return self.sendmail(
            from_addr if from_addr is not None else sender,
            to_addrs if to_addrs is not None else recipients,
            msg,
            **options,
        )

    def send_many(self, items: Iterable[Message | tuple[str, str | Iterable[str], bytes | str | Message]]) -> list[int]:
        """Queue several messages (``EmailMessage`` or ``(from, to, msg)``); pipelined when possible.

        Every item is checked before any is queued: one invalid item raises and queues nothing.
        """
        self._check_open()
        prepared = []
        for item in items:
            if isinstance(item, Message):
                sender, recipients = envelope_from_headers(item)
                prepared.append(self._submission(sender, recipients, item))
            else:
                sender, to_addrs, msg = item
                prepared.append(self._submission(sender, to_addrs, msg))
        return [self._queue("mail", submission, tx) for submission, tx in prepared]

    def noop(self) -> int:
        return self._queue("noop")

    def rset(self) -> int:
        return self._queue("rset")

    def quit(self) -> int:
        return self._queue("quit")

    # -- the view the table's conditions read ----------------------------------

    def transaction_view(self) -> Transaction:
        assert self._tx is not None
        return self._tx

    def next_work_is_mail(self) -> bool:
        return bool(self._work) and self._work[0].kind == "mail"

    def next_in_flight(self) -> bool:
        return self._next_tx is not None

    def abandoning(self) -> bool:
        return self._tx is not None

    def auth_initial_owed(self) -> bool:
        return self._auth_initial is not None

    # -- internals: replies ------------------------------------------------------

    def _handle_reply(self, reply: Reply) -> None:
        self.replies_received += 1
        if reply.code == table.SHUTDOWN_CODE and self.state != table.QUIT:
            # RFC 5321 §3.8: a server may say 421 at any time, even unasked.
            self._fire("server_shutdown", reply)
            return
        if len(self._inflight) <= self._unwritten:
            # Nothing that was handed to the caller awaits a reply: the server answered
            # a command it cannot have received (RFC 2920 §3.1: one reply per command).
            self._fire("protocol_error", reply,
                       RemoteProtocolError("unsolicited reply: no command is waiting for one",
                                           reply.to_bytes(), self.state))
            return
        pending = self._inflight.popleft()
        verb = pending.verb
        if self._debug:
            log.debug("S: %s", reply)
        if verb in _RECORDERS:
            _RECORDERS[verb](self, pending, reply)
        if pending.trigger is not None:
            self._fire(pending.trigger, reply)

    def _record_greeting(self, pending: Pending, reply: Reply) -> None:
        self.greeting = reply

    def _record_ehlo(self, pending: Pending, reply: Reply) -> None:
        if 200 <= reply.code < 300:
            self.capabilities = Capabilities.from_reply(reply)

    def _record_mail(self, pending: Pending, reply: Reply) -> None:
        tx = pending.tx
        assert tx is not None
        tx.mail_reply = reply
        if not 200 <= reply.code < 300:
            tx.sender_ok = False

    def _record_rcpt(self, pending: Pending, reply: Reply) -> None:
        tx = pending.tx
        assert tx is not None and pending.rcpt is not None
        tx.rcpt_outstanding -= 1
        if 200 <= reply.code < 300:
            tx.result.accepted[pending.rcpt] = reply
            tx.accepted_count += 1
            tx.accepted_round.append(pending.rcpt)
        elif reply.code == table.TOO_MANY_RECIPIENTS:
            tx.deferred[pending.rcpt] = reply
        else:
            tx.result.refused[pending.rcpt] = reply

    def _record_chunk(self, pending: Pending, reply: Reply) -> None:
        tx = pending.tx
        assert tx is not None
        if not 200 <= reply.code < 300:
            tx.chunk_failed = True
            tx.data_reply = tx.data_reply or reply

    def _record_data(self, pending: Pending, reply: Reply) -> None:
        assert pending.tx is not None
        pending.tx.data_reply = reply

    def _record_end(self, pending: Pending, reply: Reply) -> None:
        tx = pending.tx
        assert tx is not None
        positive = 200 <= reply.code < 300
        if self.lmtp and pending.rcpt is not None:
            # RFC 2033 §4.2: one reply per accepted recipient, in RCPT order.
            tx.result.delivery[pending.rcpt] = reply
            if positive:
                tx.round_ok = True
            else:
                tx.result.accepted.pop(pending.rcpt, None)
                tx.result.refused[pending.rcpt] = reply
        if pending.trigger is not None:
            tx.result.reply = tx.final_reply = reply
            if not self.lmtp:
                # A refused sender or chunk fails the round even when BDAT LAST got 250.
                tx.round_ok = positive and tx.accepted_count > 0 and tx.sender_ok and not tx.chunk_failed
            if tx.chunked and not positive:
                tx.chunk_failed = True

    def _fire(self, trigger: str, reply: Reply | None, error: SMTPError | None = None) -> None:
        if self.trace is not None:
            self._trace_triggers.append(trigger)
        try:
            done = _MACHINE_EVENTS[trigger].trigger(self, reply, error)
        except MachineError:
            done = False
        if not done:
            shown = reply.to_bytes() if reply is not None else None
            exc = RemoteProtocolError(f"reply not expected ({trigger})", shown, self.state)
            if trigger != "protocol_error" and self.state not in table.FINAL_STATES:
                self._fire("protocol_error", reply, exc)
            else:
                self._fail(exc)

    def _injected(self, data: bytes) -> None:
        # NO STARTTLS (USENIX Security 2021): bytes between the 220 and the
        # handshake would be read as if they came over TLS.
        exc = RemoteProtocolError("bytes received after the 220 to STARTTLS, before the TLS handshake",
                                  None, self.state)
        # What arrived is kept, but not shown in the message: how much came in the same read
        # depends on where TCP split it, and the error must read the same however it did.
        exc.data = data
        self._step(None, "bytes injected after STARTTLS", partial(self._fire, "protocol_error", None, exc))

    def _dispatch(self) -> None:
        while self.state == table.READY and self._work:
            work = self._work[0]
            self._step(None, f"{work.kind} requested",
                       partial(self._fire, table.WORK_TRIGGERS[work.kind], None))

    # -- internals: work ---------------------------------------------------------

    def _check_open(self) -> None:
        self._debug = log.isEnabledFor(logging.DEBUG)
        if self._error is not None:
            raise self._error  # the session has ended (it may still be saying QUIT)
        if self.state in table.FINAL_STATES or self._quit_queued:
            raise LocalProtocolError(f"session is {self.state} or closing; no more work can be queued")

    def _queue(self, kind: str, submission: Submission | None = None, tx: Transaction | None = None) -> int:
        self._check_open()
        self._quit_queued = kind == "quit"
        self._tickets += 1
        work = Work(kind, self._tickets, submission, tx)
        if tx is not None:
            tx.ticket = work.ticket
        self._work.append(work)
        if self.state == table.READY:
            self._dispatch()
        return work.ticket

    def _finalise_queue(self) -> None:
        """Capabilities are final: encode every queued message against them."""
        self._caps_final = True
        kept: deque[Work] = deque()
        for work in self._work:
            if work.submission is not None and work.tx is None:
                try:
                    work.tx = build_transaction(work.submission, self.capabilities, self.chunking, self.chunk_size)
                    work.tx.ticket = work.ticket
                except LocalProtocolError as exc:
                    sub = work.submission
                    failed = SendResult(sub.sender, sub.recipients, error=exc, outcome=Outcome.NOT_SENT)
                    self._emit(MessageSent(work.ticket, failed))
                    continue
            kept.append(work)
        self._work = kept

    # -- internals: output ----------------------------------------------------------

    def _send(self, data: bytes, pending: Pending | None, masked: bytes | None = None) -> None:
        self._out.append(data)
        if pending is not None:
            self._inflight.append(pending)
            self._unwritten += 1
        if self.trace is not None:
            self._trace_sent.append(masked if masked is not None else data)
        if self._debug:
            shown = masked if masked is not None else data
            log.debug("C: %s", shown[:200].decode("utf-8", "replace").rstrip())

    def _command(self, verb: str, argument: str = "", tx: Transaction | None = None) -> None:
        self._send(command_line(verb, argument), Pending(verb, table.REPLY_TRIGGERS[verb], tx))

    def _emit(self, event: Event) -> None:
        self._events.append(event)
        if self.trace is not None:
            self._trace_events.append(repr(event))

    def _fail(self, error: SMTPError) -> None:
        # Once the session is broken nothing more reaches the transport but what the table
        # says next (at most the courtesy QUIT): content queued behind the bad reply would
        # otherwise be written and stored while its message is reported as not sent.
        self._drop_unsent_output()
        if self._error is None:
            self._error = error
            # Results already delivered stay; a handshake request that the error overtook does not.
            self._events = deque(event for event in self._events if not isinstance(event, StartTLS))
            self._settle_unfinished(error)
            self._events.append(error)
            if self.trace is not None:
                self._trace_events.append(f"{type(error).__name__}: {error}")
        self._work.clear()
        self._tx = self._next_tx = None

    def _drop_unsent_output(self) -> None:
        """Forget the bytes not handed out yet, and the commands in flight that they carried."""
        for _ in range(min(self._unwritten, len(self._inflight))):
            self._inflight.pop()
        self._unwritten = 0
        self._out.clear()
        self._content_queued.clear()

    def _settle_unfinished(self, error: SMTPError) -> None:
        """Every message not finished yet gets its result: uncertain once its content went out."""
        for tx in (self._tx, self._next_tx):
            if tx is not None:
                # The state the session failed in (the error's), not 'failed', names where it was cut.
                settle_cut_short(tx, error, getattr(error, "state", None) or self.state)
                self._emit(MessageSent(tx.ticket, tx.result))
        for work in self._work:
            if work.tx is not None:  # queued, built, never started
                work.tx.result.error = error
                self._emit(MessageSent(work.ticket, work.tx.result))
            elif work.submission is not None:
                sub = work.submission
                self._emit(MessageSent(work.ticket, SendResult(sub.sender, sub.recipients, error=error)))
        self._work.clear()
        self._tx = self._next_tx = None

    def _step(self, reply: Reply | None, note: str, action: Any) -> None:
        """Run ``action`` and, when tracing, record what it did as one step."""
        if self.trace is None:
            action()
            return
        before = self.state
        self._trace_sent = []
        self._trace_events = []
        self._trace_triggers = []
        action()
        self.trace.append(
            TraceStep(before, reply, self.state, b"".join(self._trace_sent), tuple(self._trace_events), note,
                      tuple(self._trace_triggers))
        )

    # -- the table's actions (named in machine.TRANSITIONS) ------------------------

    def send_ehlo(self, ev: EventData) -> None:
        self._command("LHLO" if self.lmtp else "EHLO", self.local_hostname)

    def send_helo(self, ev: EventData) -> None:
        self._command("HELO", self.local_hostname)

    def send_starttls(self, ev: EventData) -> None:
        self._command("STARTTLS")

    def request_handshake(self, ev: EventData) -> None:
        self._emit(StartTLS(reply_of(ev)))

    def forget_capabilities(self, ev: EventData) -> None:
        # RFC 3207 §4.2: discard everything learnt before TLS.
        self.capabilities = Capabilities()

    def send_auth(self, ev: EventData) -> None:
        assert self.credentials is not None
        mech = choose_mechanism(self.capabilities.auth_mechanisms, self.credentials, self.auth_mechanism)
        assert mech is not None
        self.auth_mech = mech
        self.auth_step = 0
        initial = mech.initial(self.credentials)
        self._auth_initial = None
        line, masked = f"AUTH {mech.name}\r\n".encode(), None
        if initial is not None:
            encoded = base64.b64encode(initial).decode("ascii") or "="
            with_initial = f"AUTH {mech.name} {encoded}\r\n".encode()
            if len(with_initial) <= MAX_AUTH_COMMAND:
                line, masked = with_initial, f"AUTH {mech.name} ".encode() + MASK + b"\r\n"
            else:
                # RFC 4954 §4: an initial response that would make the AUTH command longer
                # than SMTP's line limit MUST NOT be used; it answers the empty 334 instead.
                self._auth_initial = initial
        self._send(line, Pending("AUTH", table.REPLY_TRIGGERS["AUTH"]), masked)

    def send_auth_response(self, ev: EventData) -> None:
        assert self.auth_mech is not None and self.credentials is not None
        if self._auth_initial is not None:
            answer, self._auth_initial = self._auth_initial, None
        else:
            challenge_bytes = base64.b64decode(reply_of(ev).lines[0].strip())
            answer = self.auth_mech.respond(self.credentials, challenge_bytes, self.auth_step)
            self.auth_step += 1
        line = base64.b64encode(answer) + b"\r\n"
        self._send(line, Pending("AUTH", table.REPLY_TRIGGERS["AUTH"]), MASK + b"\r\n")

    def send_auth_cancel(self, ev: EventData) -> None:
        self._send(b"*\r\n", Pending("AUTH", table.REPLY_TRIGGERS["AUTH"]))

    def mark_authenticated(self, ev: EventData) -> None:
        self.authenticated = True
        assert self.auth_mech is not None
        self._emit(Authenticated(self.auth_mech.name, reply_of(ev)))

    def session_ready(self, ev: EventData) -> None:
        self._finalise_queue()
        user = self.credentials.username if self.authenticated and self.credentials else None
        self._emit(SessionReady(self.capabilities, reply_of(ev), self.encrypted, user))

    def send_transaction(self, ev: EventData) -> None:
        work = self._work.popleft()
        assert work.tx is not None
        self._tx = work.tx
        self._send_round(work.tx, work.tx.result.recipients)

    def send_next_transaction(self, ev: EventData) -> None:
        work = self._work.popleft()
        assert work.tx is not None
        self._next_tx = work.tx
        self._send_round(work.tx, work.tx.result.recipients)

    def send_retry(self, ev: EventData) -> None:
        tx = self.transaction_view()
        self._send_round(tx, tuple(tx.deferred))

    def _send_round(self, tx: Transaction, recipients: Sequence[str]) -> None:
        """MAIL, RCPT..., DATA (or the BDAT chunks): all at once when pipelining, else one by one."""
        tx.start_round(recipients)
        pipelined = self.pipelining and self.capabilities.pipelining

        def expect(verb: str, rcpt: str | None = None) -> Pending:
            # The table says which replies only get recorded when the group goes out at once.
            recorded = pipelined and verb in table.RECORDED_WHEN_PIPELINED
            return Pending(verb, None if recorded else table.REPLY_TRIGGERS[verb], tx, rcpt)

        group = [(tx.mail_line, expect("MAIL"))]
        group += [(tx.rcpt_lines[rcpt], expect("RCPT", rcpt)) for rcpt in recipients]
        if tx.chunked:
            body, step = tx.body, tx.chunk_size
            for start in range(0, len(body), step) if body else range(1):
                chunk = body[start : start + step]
                if start + step >= len(body):
                    group.append((b"BDAT %d LAST\r\n" % len(chunk) + chunk, expect("END")))
                else:
                    group.append((b"BDAT %d\r\n" % len(chunk) + chunk, expect("BDAT")))
        else:
            group.append((b"DATA\r\n", expect("DATA")))
        if pipelined:
            for data, pending in group:
                self._send(data, pending)
            if tx.chunked:
                self._content_queued.append(tx)  # BDAT carries the content with the command
        else:
            self._send(*group[0])
            tx.held.extend(group[1:])

    def send_next_held(self, ev: EventData) -> None:
        tx = self.transaction_view()
        if tx.held:
            data, pending = tx.held.popleft()
            if pending.verb in _CONTENT_VERBS:
                self._content_queued.append(tx)
            self._send(data, pending)

    def send_content(self, ev: EventData) -> None:
        tx = self.transaction_view()
        self._content_queued.append(tx)
        if self.lmtp:
            accepted = tx.accepted_round
            self._send(tx.body, None)
            for index, rcpt in enumerate(accepted):
                last = index == len(accepted) - 1
                self._inflight.append(Pending("END", "final_reply" if last else None, tx, rcpt))
            self._unwritten += len(accepted)
        else:
            self._send(tx.body, Pending("END", "final_reply", tx))

    def send_lone_dot(self, ev: EventData) -> None:
        # RFC 2920 §3.1: 354 although every RCPT failed; end the (empty) data at once.
        self._send(b".\r\n", Pending("END", "final_reply", self.transaction_view()))

    def send_rset(self, ev: EventData) -> None:
        if self._tx is None:
            self._command_ticket = self._work.popleft().ticket
        self._command("RSET")

    def send_noop(self, ev: EventData) -> None:
        self._command_ticket = self._work.popleft().ticket
        self._command("NOOP")

    def send_quit(self, ev: EventData) -> None:
        if self._work and self._work[0].kind == "quit":
            self._work.popleft()
        self._command("QUIT")

    def finish_transaction(self, ev: EventData) -> None:
        tx = self.transaction_view()
        result = tx.result
        if tx.round_ok and tx.sender_ok and not tx.chunk_failed and not tx.deferred and tx.earlier is None:
            # The common case, decided by the round's own flags: a final 2xx for accepted recipients.
            result.outcome = _DELIVERED
        else:
            for rcpt, reply in tx.deferred.items():
                result.refused[rcpt] = reply
            if tx.earlier is not None:
                settle_retry_round(tx)
            elif result.error is None:
                result.error = transaction_error(tx, source_of(ev))
            result.outcome = _DELIVERED if result.error is None and result.accepted else _REFUSED
        self._emit(MessageSent(tx.ticket, result))
        self._tx, self._next_tx = self._next_tx, None

    def command_done(self, ev: EventData) -> None:
        self._emit(CommandDone(self._command_ticket, source_of(ev).upper(), reply_of(ev)))

    def closed_cleanly(self, ev: EventData) -> None:
        self._close_reply = reply_of(ev)
        self._emit(Closed(reply_of(ev)))

    def fail_greeting(self, ev: EventData) -> None:
        self._fail(SMTPReplyError(reply_of(ev), "server refused the session", source_of(ev)))

    def fail_tls_unavailable(self, ev: EventData) -> None:
        self._fail(TLSUnavailable(reply_of(ev), "STARTTLS is required but not available", source_of(ev)))

    def fail_auth_in_clear(self, ev: EventData) -> None:
        self._fail(LocalProtocolError(
            "refusing to send credentials over an unencrypted connection to a host that is not loopback; "
            "use TLS (starttls='required' or tls=True) or pass allow_insecure_auth=True"))

    def fail_auth_unavailable(self, ev: EventData) -> None:
        offered = ", ".join(self.capabilities.auth_mechanisms) or "none"
        wanted = self.auth_mechanism or "any usable mechanism"
        self._fail(AuthenticationError(
            reply_of(ev), f"cannot authenticate: server offers AUTH {offered}, wanted {wanted}", source_of(ev)))

    def fail_auth(self, ev: EventData) -> None:
        self._fail(AuthenticationError(reply_of(ev), "authentication failed", source_of(ev)))

    def fail_reply(self, ev: EventData) -> None:
        self._fail(SMTPReplyError(reply_of(ev), "unexpected reply", source_of(ev)))

    def fail_shutdown(self, ev: EventData) -> None:
        self._fail(ServerDisconnected("server is shutting down (421)", reply_of(ev), source_of(ev)))

    def fail_disconnected(self, ev: EventData) -> None:
        source = source_of(ev)
        self._fail(ServerDisconnected("server closed the connection", None, source))

    def fail_protocol(self, ev: EventData) -> None:
        error = cast("tuple[Any, ...]", ev.args)[1]
        if not isinstance(error, SMTPError):
            error = RemoteProtocolError("protocol error", None, source_of(ev))
        self._fail(error)

    def __repr__(self) -> str:
        user = self.credentials.username if self.credentials else None
        return f"<ClientSession state={self.state!r} user={user!r} in_flight={len(self._inflight)}>"


_RECORDERS = {
    "GREETING": ClientSession._record_greeting,
    "EHLO": ClientSession._record_ehlo,
    "LHLO": ClientSession._record_ehlo,
    "MAIL": ClientSession._record_mail,
    "RCPT": ClientSession._record_rcpt,
    "BDAT": ClientSession._record_chunk,
    "DATA": ClientSession._record_data,
    "END": ClientSession._record_end,
}


__all__ = ["END_OF_DATA", "ClientSession"]
