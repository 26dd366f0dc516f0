"""The session's model: the object the protocol table drives (private; session.py wraps it).

It keeps the bookkeeping -- the commands in flight, the current message, the
queue of work, the trace -- and carries out the table's actions, each one
"encode this command and queue it" or "report this result".  Which action runs
when, and what a reply means, is the protocol package's business: this module
compares no reply code and chooses no command.
"""

from __future__ import annotations

import base64
import logging
from collections import deque
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, cast

from transitions import EventData, MachineError

from .auth import Mechanism
from .commands import bdat, command_line
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
    MessageSent,
    NeedData,
    SessionEvent,
    SessionReady,
    StartTLS,
)
from .extensions import Capabilities
from .message import DATA_END, stuff_dots
from .options import SessionOptions
from .protocol import outcomes
from .protocol import table as protocol
from .protocol.rules import auth_command, joins_window, mechanism_for, reply_of, source_of, uses_chunking
from .protocol.runtime import MACHINE, RECORDED
from .replies import Reply, ReplyParser
from .results import Outcome, SendResult
from .trace import TraceStep, hide_credentials
from .transaction import Pending, Submission, Transaction, Work, build_transaction

log = logging.getLogger("smtp_fsm")

#: What ``awaiting`` calls the reply to the end of a message's data ("." after DATA, or BDAT LAST).
END_OF_DATA = "end of data"
_AWAITED = {"GREETING": "greeting", "MAIL": "MAIL FROM", "RCPT": "RCPT TO", "END": END_OF_DATA}
# Read per reply or per message: module globals are cheaper than attribute look-ups.
_MACHINE_EVENTS = MACHINE.events
_TRIGGERS = protocol.REPLY_TRIGGERS
_RECORDERS = protocol.RECORDERS
_RECORDED_ROWS = RECORDED  # (protocol.runtime: taken without a trigger)
_REPLY_TRIGGER = protocol.reply_trigger
_ENDED, _READY, _SILENT = protocol.FINAL_STATES, protocol.READY, protocol.SILENT_STATES
_WORK_TRIGGERS = protocol.WORK_TRIGGERS
_FINAL, _DELIVERY = _TRIGGERS["END"], protocol.DELIVERY_REPLY
_CONTENT, _BEGIN_MAIL = protocol.CONTENT, protocol.WORK_TRIGGERS["mail"]
_MAIL_REPLY, _RCPT_REPLY, _DATA_REPLY = _TRIGGERS["MAIL"], _TRIGGERS["RCPT"], _TRIGGERS["DATA"]


class SessionModel:
    """The state, settings and bookkeeping of one session, and the table's actions."""

    def __init__(self, options: SessionOptions) -> None:
        # settings: fixed for the session's life, checked by SessionOptions; copied to attributes
        # because the table's conditions read them per reply
        self.local_hostname = options.local_hostname
        self.lmtp = options.lmtp
        self.loopback = options.loopback
        self.starttls_policy: str = options.starttls
        self.allow_insecure_auth = options.allow_insecure_auth
        self.pipelining = options.pipelining
        self.chunking = options.chunking
        self.chunk_size = options.chunk_size
        self.window_limit = options.bdat_window  # (1 once the server showed it needs one at a time)
        self.quit_after: str | None = options.quit_after
        self.credentials = options.credentials
        self.auth_mechanism = options.auth_mechanism
        # what the session has learnt (the conditions read these)
        self.encrypted = options.encrypted
        self.authenticated = False
        self.auth_mech: Mechanism | None = None
        self.auth_step = 0
        self.auth_initial: bytes | None = None  # an initial response too long for the AUTH line, owed at 334
        self.capabilities = Capabilities()
        self.tx: Transaction | None = None  # the message whose replies are being read
        self.next_tx: Transaction | None = None  # the next one, pipelined behind it
        # a BDAT window: the messages in flight behind tx, in the order their replies come
        self.ahead: deque[Transaction] = deque()
        self.rset_due = False  # a refusal in the window: RSET before the next message
        self.bdat_lockstep = False  # the server wants BDAT after the MAIL and RCPT replies
        self.bdat_groups_proven = False  # a BDAT sent with its MAIL and RCPT was accepted
        self.last_final_ok = False
        self._resend: list[Transaction] = []  # refused for the order: sent again after the RSET
        self.state: str = protocol.INITIAL  # moved by the table's rows from here on
        self.row = -1  # the index of the last row taken (protocol.runtime sets it)

        self._parser = ReplyParser()
        self._out: list[bytes] = []
        self._inflight: deque[Pending] = deque([Pending("GREETING", _TRIGGERS["GREETING"])])
        self._events: deque[SessionEvent | SMTPError] = deque()
        self._work: deque[Work] = deque()
        self._tickets = 0
        self._caps_final = False
        self._sending: Transaction | None = None  # the message a round is being sent for
        self._command_ticket = 0
        self.error: SMTPError | None = None
        self.closed: Closed | None = None  # the last event, once the session has ended
        self._quit_queued = False
        self._debug = False  # log.isEnabledFor(DEBUG), read at each entry point
        self._unwritten = 0  # commands in flight whose bytes data_to_send has not handed out yet
        self._content_queued: list[Transaction] = []  # messages whose content is in _out, not handed out yet
        #: Complete replies read so far; drivers restart their per-reply deadline when it moves.
        self.replies_received = 0
        self.trace: list[TraceStep] | None = None  # (_traced.TracedSessionModel records one)
        self._emitted = 0  # events and errors queued so far (a trace step takes the ones it added)

    # -- the I/O surface ------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        if self.closed is not None:
            return  # the session is over: late bytes and the server's close change nothing
        self._debug = log.isEnabledFor(logging.DEBUG)  # once per call, not per reply
        if not data:
            self._step(None, "connection closed", partial(self._fire, protocol.CONNECTION_LOST, None))
            return
        if self.state in _SILENT:
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
            if state in _SILENT and (index + 1 < count or parser.has_partial or parser.error):
                self._injected(b"".join(r.to_bytes() for r in replies[index + 1 :]))
                break
            if state == _READY and self._work:
                # Queued work starts at once, as it would had this reply come alone: what the
                # replies after it in this read meet does not depend on where TCP split them.
                self._dispatch()
        # Replies completed before bad bytes were handled first (a 250 that accepted a
        # message is never lost to the garbage after it); then the bad bytes end the session.
        if parser.error is not None and self.state not in _ENDED:
            self._step(None, "broken reply", partial(self._fire, protocol.PROTOCOL_ERROR, None, parser.error))

    def data_to_send(self) -> bytes:
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

    def next_event(self) -> SessionEvent | NeedData:
        if self._events:
            item = self._events.popleft()
            if isinstance(item, SMTPError):
                raise item  # once: the Closed event that follows it is what every later call returns
            return item
        if self.closed is not None:
            return self.closed
        return NEED_DATA

    def handshake_done(self) -> None:
        if self.state != protocol.TLS_HANDSHAKE:
            raise LocalProtocolError(f"tls_established() called in state {self.state!r}")
        self.encrypted = True
        self._step(None, "TLS established", partial(self._fire, protocol.TLS_ESTABLISHED, None))

    def release(self, reason: SMTPError | None) -> None:
        self._quit_queued = True
        if self.state in _ENDED:
            return
        if reason is None:  # (either ending drops the output not handed out yet)
            self._step(None, "closed by the caller", partial(self._fire, protocol.CLOSE, None))
        else:
            self._step(None, "abandoned by the caller", partial(self._fire, protocol.ABANDON, None, reason))

    @property
    def awaiting(self) -> str | None:
        inflight = self._inflight
        if not inflight or self.closed is not None:
            return None
        verb = inflight[0].verb
        return _AWAITED.get(verb, verb)

    @property
    def buffered(self) -> int:
        return self._parser.buffered

    # -- work -----------------------------------------------------------------

    def prepare(self, submission: Submission) -> tuple[Submission, Transaction | None]:
        """Check a message against the capabilities once known (the syntax alone before): nothing
        invalid is queued.  (The caller has checked the session is open: ``check_open``.)"""
        caps = self.capabilities if self._caps_final else None
        tx = build_transaction(submission, caps, uses_chunking(self.chunking, self.lmtp, caps), self.chunk_size)
        return submission, (tx if self._caps_final else None)

    def check_open(self) -> None:
        self._debug = log.isEnabledFor(logging.DEBUG)
        if self.error is not None:
            raise self.error  # the session has ended (it may still be saying QUIT)
        if self.state in _ENDED or self.state == protocol.QUIT or self._quit_queued:
            raise LocalProtocolError(f"session is {self.state} or closing; no more work can be queued")

    def queue(self, kind: str) -> int:
        """Queue a command (``noop``, ``rset``, ``quit``); messages go through ``queue_messages``."""
        self.check_open()
        self._quit_queued = kind == "quit"
        self._tickets += 1
        self._work.append(Work(kind, self._tickets))
        self.start_work()
        return self._tickets

    def queue_messages(self, submissions: Sequence[Submission]) -> list[int]:
        """Queue messages, each checked before any is queued (one invalid raises and queues nothing);
        the work starts once all are queued (a BDAT window takes as many as it may at once)."""
        self.check_open()
        prepare = self.prepare
        checked = []
        previous: Submission | None = None
        for submission in submissions:
            if (previous is not None and submission.source is previous.source and submission.prepared is None
                    and previous.prepared is not None):
                # The same bytes again (one message to many, each its own envelope): checked once.
                submission.prepared = previous.prepared
            checked.append(prepare(submission))
            previous = submission
        self._quit_queued = False
        first = self._tickets + 1
        self._tickets += len(checked)
        work = self._work
        for ticket, (submission, tx) in enumerate(checked, first):
            if tx is not None:
                tx.ticket = ticket
            work.append(Work("mail", ticket, submission, tx))
        self.start_work()
        return list(range(first, self._tickets + 1))

    def start_work(self) -> None:
        """Send what is queued if it can go now: from ``ready``, or behind the messages of a BDAT window
        in flight (the table decides whether the window has room)."""
        state = self.state
        if state == _READY:
            self._dispatch()
        elif state == _CONTENT and self.tx is not None and self.tx.grouped and self.next_work_is_mail():
            if self.trace is None:
                self._fire(_BEGIN_MAIL, None)
            else:
                self._step(None, "mail requested", partial(self._fire, _BEGIN_MAIL, None))

    # -- what the conditions read besides the attributes --------------------------------

    def next_work_is_mail(self) -> bool:
        return bool(self._work) and self._work[0].kind == "mail"

    def next_queued_tx(self) -> Transaction | None:
        work = self._work
        return work[0].tx if work and work[0].kind == "mail" else None

    def last_in_flight(self) -> Transaction | None:
        return self.ahead[-1] if self.ahead else self.tx

    # -- internals: replies ------------------------------------------------------

    def _handle_reply(self, reply: Reply) -> None:
        self.replies_received += 1
        inflight = self._inflight
        pending = inflight[0] if len(inflight) > self._unwritten else None
        trigger = _REPLY_TRIGGER(reply, None if pending is None else pending.trigger, self.state)
        if pending is None or trigger != pending.trigger:
            # A session rule (protocol.SESSION_RULES): a 421, or a reply no command waits for,
            # i.e. one answering a command the server cannot have received (RFC 2920 §3.1).
            error = None if pending is not None else RemoteProtocolError(
                "unsolicited reply: no command is waiting for one", reply.to_bytes(), self.state)
            self._fire(trigger, reply, error)
            return
        inflight.popleft()
        if self._debug:
            log.debug("S: %s", reply)
        recorder = _RECORDERS.get(pending.verb)
        if recorder is not None:
            recorder(self, pending, reply)
        recorded = _RECORDED_ROWS.get(trigger)
        row = None if recorded is None else recorded.get(self.state)
        if row is None:
            self._fire(trigger, reply)
        elif row.actions:
            row.take(self, reply)  # (a pipelined message's final reply: its result)
        else:
            self.row = row.index  # a trace names the row that declares this reply recorded

    def _fire(self, trigger: str, reply: Reply | None, error: SMTPError | None = None) -> None:
        try:
            done = _MACHINE_EVENTS[trigger].trigger(self, reply, error)
        except MachineError:
            done = False
        if done:
            return
        # The table's last rule: a trigger that no row of this state takes breaks the protocol.
        shown = reply.to_bytes() if reply is not None else None
        exc = RemoteProtocolError(f"reply not expected ({trigger})", shown, self.state)
        if trigger != protocol.PROTOCOL_ERROR and self.state not in _ENDED:
            self._fire(protocol.PROTOCOL_ERROR, reply, exc)
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
        self._step(None, "bytes injected after STARTTLS", partial(self._fire, protocol.PROTOCOL_ERROR, None, exc))

    def _dispatch(self) -> None:
        while self.state == _READY and self._work:
            work = self._work[0]
            trigger = _WORK_TRIGGERS[work.kind]
            if self.trace is None:
                self._fire(trigger, None)  # (the step's note and closure only matter to a trace)
            else:
                self._step(None, f"{work.kind} requested", partial(self._fire, trigger, None))

    def _finalise_queue(self) -> None:
        """Capabilities are final: encode every queued message against them."""
        self._caps_final = True
        chunked = uses_chunking(self.chunking, self.lmtp, self.capabilities)
        kept: deque[Work] = deque()
        for work in self._work:
            if work.submission is not None and work.tx is None:
                try:
                    work.tx = build_transaction(work.submission, self.capabilities, chunked, self.chunk_size)
                    work.tx.ticket = work.ticket
                except LocalProtocolError as exc:
                    sub = work.submission
                    failed = SendResult(sub.sender, sub.recipients, error=exc, outcome=Outcome.NOT_SENT)
                    self._emit(MessageSent(work.ticket, failed))
                    continue
            kept.append(work)
        self._work = kept

    # -- internals: output and results ------------------------------------------------------

    def _send(self, data: bytes, pending: Pending | None) -> None:
        self._out.append(data)
        if pending is not None:
            self._inflight.append(pending)
            self._unwritten += 1
        if self._debug:
            sasl = pending is not None and pending.verb == "AUTH" and not data.startswith(b"AUTH ")
            log.debug("C: %s", hide_credentials(data[:200], sasl).decode("utf-8", "replace").rstrip())

    def _send_commands(self, commands: list[bytes], pendings: list[Pending]) -> None:
        """``_send`` for each command of a group, in one go when neither a trace nor the debug log
        needs to see them one by one (a message's group: this runs per message)."""
        if self.trace is not None or self._debug:
            for data, pending in zip(commands, pendings, strict=True):
                self._send(data, pending)
            return
        self._out.extend(commands)
        self._inflight.extend(pendings)
        self._unwritten += len(pendings)

    def _command(self, verb: str, argument: str = "", tx: Transaction | None = None, rcpt: str | None = None) -> None:
        self._send(command_line(verb, argument), Pending(verb, _TRIGGERS[verb], tx, rcpt))

    def _emit(self, event: SessionEvent) -> None:
        self._events.append(event)
        self._emitted += 1

    def _fail(self, error: SMTPError) -> None:
        # Once the session is broken nothing more reaches the transport but what the table
        # says next (at most the courtesy QUIT): content queued behind the bad reply would
        # otherwise be written and stored while its message is reported as not sent.
        self._drop_unsent_output()
        if self.error is None:
            self.error = error
            # Results already delivered stay; a handshake request that the error overtook does not.
            self._events = deque(event for event in self._events if not isinstance(event, StartTLS))
            self._settle_unfinished(error)
            self._events.append(error)
            self._emitted += 1
        self._work.clear()
        self.ahead.clear()
        self._resend.clear()
        self.tx = self.next_tx = None

    def _drop_unsent_output(self) -> None:
        """Forget the bytes not handed out yet, and the commands in flight that they carried."""
        for _ in range(min(self._unwritten, len(self._inflight))):
            self._inflight.pop()
        self._unwritten = 0
        self._out.clear()
        self._content_queued.clear()

    def _settle_unfinished(self, error: SMTPError) -> None:
        """Every message not finished yet gets its result: uncertain once its content went out."""
        for tx in (self.tx, self.next_tx, *self.ahead):
            if tx is not None:
                # The state the session failed in (the error's), not 'failed', names where it was cut.
                result = outcomes.settle_cut_short(tx, error, getattr(error, "state", None) or self.state)
                self._emit(MessageSent(tx.ticket, result))
        for tx in self._resend:  # refused for the order, waiting for the RSET: the server took nothing
            tx.result.error = error
            self._emit(MessageSent(tx.ticket, tx.result))
        self.ahead.clear()
        self._resend.clear()
        for work in self._work:
            if work.tx is not None:  # queued, built, never started
                work.tx.result.error = error
                self._emit(MessageSent(work.ticket, work.tx.result))
            elif work.submission is not None:
                sub = work.submission
                self._emit(MessageSent(work.ticket, SendResult(sub.sender, sub.recipients, error=error)))
        self._work.clear()
        self.tx = self.next_tx = None

    def _step(self, reply: Reply | None, note: str, action: Callable[[], None]) -> None:
        """Run ``action``: one step of the session (``_traced.TracedSessionModel`` records it)."""
        action()

    # -- the table's actions (named in protocol/table.py) ------------------------------

    def send_ehlo(self, ev: EventData) -> None:
        self._command("EHLO", self.local_hostname)

    def send_lhlo(self, ev: EventData) -> None:
        self._command("LHLO", self.local_hostname)

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
        mech = mechanism_for(self)
        assert mech is not None and self.credentials is not None
        self.auth_mech = mech
        self.auth_step = 0
        argument, self.auth_initial = auth_command(mech, mech.initial(self.credentials))
        self._send(command_line("AUTH", argument), Pending("AUTH", _TRIGGERS["AUTH"]))

    def send_auth_response(self, ev: EventData) -> None:
        assert self.auth_mech is not None and self.credentials is not None
        if self.auth_initial is not None:
            answer, self.auth_initial = self.auth_initial, None
        else:
            challenge_bytes = base64.b64decode(reply_of(ev).lines[0].strip())
            respond = self.auth_mech.respond
            assert respond is not None  # the table's challenge_valid: only mechanisms with steps get here
            answer = respond(self.credentials, challenge_bytes, self.auth_step)
            self.auth_step += 1
        line = base64.b64encode(answer) + b"\r\n"
        self._send(line, Pending("AUTH", _TRIGGERS["AUTH"]))

    def send_auth_cancel(self, ev: EventData) -> None:
        self._send(b"*\r\n", Pending("AUTH", _TRIGGERS["AUTH"]))

    def mark_authenticated(self, ev: EventData) -> None:
        self.authenticated = True
        assert self.auth_mech is not None
        self._emit(Authenticated(self.auth_mech.name, reply_of(ev)))

    def session_ready(self, ev: EventData) -> None:
        self._finalise_queue()
        user = self.credentials.username if self.authenticated and self.credentials else None
        self._emit(SessionReady(self.capabilities, reply_of(ev), self.encrypted, user))

    def take_message(self, ev: EventData) -> None:
        work = self._work.popleft()
        assert work.tx is not None
        self.tx = self._sending = work.tx
        work.tx.start_round(work.tx.result.recipients)

    def take_next_message(self, ev: EventData) -> None:
        work = self._work.popleft()
        assert work.tx is not None
        self.next_tx = self._sending = work.tx
        work.tx.start_round(work.tx.result.recipients)

    def start_retry(self, ev: EventData) -> None:
        tx = self._sending = self.tx
        assert tx is not None
        tx.start_round(tuple(tx.deferred))

    def take_command(self, ev: EventData) -> None:
        self._command_ticket = self._work.popleft().ticket

    def send_group(self, ev: EventData) -> None:
        tx = self._sending
        assert tx is not None
        tx.grouped = tx.chunked
        recipients, lines = tx.recipients_round, tx.rcpt_lines
        tx.rcpts_sent = len(recipients)
        commands, pendings = [tx.mail_line], [Pending("MAIL", _MAIL_REPLY, tx)]
        for rcpt in recipients:
            commands.append(lines[rcpt])
            pendings.append(Pending("RCPT", _RCPT_REPLY, tx, rcpt))
        if not tx.chunked:
            commands.append(b"DATA\r\n")
            pendings.append(Pending("DATA", _DATA_REPLY, tx))
        self._send_commands(commands, pendings)
        if tx.chunked:
            while tx.chunks_left:
                self._send_chunk(tx)

    def fill_window(self, ev: EventData) -> None:
        """Send the next queued messages behind this one while they may join the window (the rules'
        ``joins_window``: nothing after a refusal in it, the RSET comes first)."""
        work, ahead = self._work, self.ahead
        while joins_window(self):
            tx = work.popleft().tx
            assert tx is not None
            tx.start_round(tx.result.recipients)
            tx.ahead = True
            self._sending = tx
            self.send_group(ev)
            ahead.append(tx)

    def next_in_window(self, ev: EventData) -> None:
        self.tx = self.ahead.popleft()

    def rotate_window(self, ev: EventData) -> None:
        """A 452 retry round went out behind the window: its replies come after the others'."""
        tx = self.tx
        assert tx is not None
        tx.ahead = True
        self.ahead.append(tx)
        self.tx = self.ahead.popleft()

    def requeue_message(self, ev: EventData) -> None:
        tx = self.tx
        assert tx is not None
        tx.restart()
        self._resend.append(tx)
        self.tx = None

    def mark_rset_due(self, ev: EventData) -> None:
        self.rset_due = True

    def window_reset_done(self, ev: EventData) -> None:
        """The RSET after a refusal in the window: the messages refused for the order go first."""
        self.rset_due = False
        self._work.extendleft(Work("mail", tx.ticket, None, tx) for tx in reversed(self._resend))
        self._resend.clear()

    def send_mail(self, ev: EventData) -> None:
        tx = self._sending
        assert tx is not None
        self._send(tx.mail_line, Pending("MAIL", _TRIGGERS["MAIL"], tx))

    def send_rcpt(self, ev: EventData) -> None:
        tx = self.tx
        assert tx is not None
        rcpt = tx.recipients_round[tx.rcpts_sent]
        tx.rcpts_sent += 1
        self._send(tx.rcpt_lines[rcpt], Pending("RCPT", _TRIGGERS["RCPT"], tx, rcpt))

    def send_data(self, ev: EventData) -> None:
        self._send(b"DATA\r\n", Pending("DATA", _TRIGGERS["DATA"], self.tx))

    def send_chunk(self, ev: EventData) -> None:
        assert self.tx is not None
        self._send_chunk(self.tx)

    def _send_chunk(self, tx: Transaction) -> None:
        chunk, last = tx.next_chunk()
        verb = "END" if last else "BDAT"
        self._content_queued.append(tx)  # BDAT carries the content with the command
        self._send(bdat(len(chunk), last) + chunk, Pending(verb, _TRIGGERS[verb], tx))

    def send_content(self, ev: EventData) -> None:
        tx = self.tx
        assert tx is not None
        self._send_data(tx, Pending("END", _FINAL, tx))

    def send_content_lmtp(self, ev: EventData) -> None:
        tx = self.tx
        assert tx is not None
        self._send_data(tx, None)
        accepted = tx.accepted_round
        tx.ends_due = len(accepted)
        last = len(accepted) - 1
        for index, rcpt in enumerate(accepted):
            self._inflight.append(Pending("END", _FINAL if index == last else _DELIVERY, tx, rcpt))
        self._unwritten += len(accepted)

    def _send_data(self, tx: Transaction, pending: Pending | None) -> None:
        """The content after a 354, dot-stuffed now, and the end of the data as a piece of its own:
        ``data_to_send`` joins what is out in one copy (content with no line starting with a dot is
        copied once on its way to the transport, and a queued message holds no stuffed copy of it)."""
        self._content_queued.append(tx)
        self._send(stuff_dots(tx.body), pending)
        self._out.append(DATA_END)

    def send_lone_dot(self, ev: EventData) -> None:
        self._send(DATA_END, Pending("END", _FINAL, self.tx))

    def send_rset(self, ev: EventData) -> None:
        self._command("RSET")

    def send_noop(self, ev: EventData) -> None:
        self._command("NOOP")

    def send_quit(self, ev: EventData) -> None:
        self._command("QUIT")

    def finish_probe(self, ev: EventData) -> None:
        tx = self.tx
        assert tx is not None
        self._emit(MessageSent(tx.ticket, outcomes.probe(tx, source_of(ev))))
        self.tx = None
        self.stop_work(ev)

    def stop_work(self, ev: EventData) -> None:
        """The session stops here (quit_after): what is still queued is not sent."""
        if self._work:
            self._settle_unfinished(SMTPError(f"not sent: the session stops after {self.quit_after} (quit_after)"))

    def finish_transaction(self, ev: EventData) -> None:
        tx = self.tx
        assert tx is not None
        self._emit(MessageSent(tx.ticket, outcomes.finish(tx, source_of(ev))))
        self.tx, self.next_tx = self.next_tx, None

    def command_done(self, ev: EventData) -> None:
        self._emit(CommandDone(self._command_ticket, source_of(ev).upper(), reply_of(ev)))

    def closed_cleanly(self, ev: EventData) -> None:
        self._end(reply_of(ev))

    def closed_locally(self, ev: EventData) -> None:
        if self.tx is not None or self.next_tx is not None or self._work or self.ahead or self._resend:
            self._settle_unfinished(SMTPError(f"the session was closed in state {source_of(ev)!r}"))
        self._end(None)

    def _end(self, reply: Reply | None) -> None:
        """The session's last event: ``next_event`` returns it from now on (after any error, raised once)."""
        self._drop_unsent_output()  # a QUIT not written yet when the server closed has no one to read it
        self.closed = Closed(reply, self.error)
        self._emit(self.closed)

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
        self._end(None)

    def fail_disconnected(self, ev: EventData) -> None:
        self._fail(ServerDisconnected("server closed the connection", None, source_of(ev)))
        self._end(None)

    def fail_protocol(self, ev: EventData) -> None:
        error = cast("tuple[Any, ...]", ev.args)[1]
        if not isinstance(error, SMTPError):
            error = RemoteProtocolError("protocol error", None, source_of(ev))
        self._fail(error)
        self._end(None)

    def fail_local(self, ev: EventData) -> None:
        self._fail(cast("tuple[Any, ...]", ev.args)[1])
        self._end(None)
