"""The protocol table: every SMTP phase and every move between them, as data.

Theory of operation
===================

An SMTP client waits, almost all of the time, for one particular reply.
Each state below names what it is waiting for (the greeting, the answer to
EHLO, to STARTTLS, to AUTH, to the transaction's commands, to QUIT), and
each transition names the reply or the caller's request that moves it on.

Replies are matched, in order, to the commands in flight (RFC 2920 §3.1:
one reply per command, never more).  Each command in flight names the
trigger its reply fires (``REPLY_TRIGGERS``); the trigger's transitions are
tried in table order and the first whose conditions hold is taken, so a
trigger with several rows reads like a small decision list.  The rows'
``after`` actions are what the client then *does*: the session
(session.py) implements them as "encode this command and queue it", and no
decision is taken there.

Two kinds of reply fire nothing.  With PIPELINING the replies to MAIL, RCPT
and BDAT chunks that are sent together with DATA (or BDAT LAST) are only
recorded: the group's outcome is decided when the reply to DATA or to the
last chunk arrives, because that command was already sent.  With LMTP the
delivery replies after the data fire only once, on the last recipient's.
That is what keeps a pipelined message at two triggers (DATA's 354 and the
final reply) and a chunked one at one: triggers, not table look-ups, set the
engine's cost (about 2.5 µs each here; 11 µs through transitions' stock
classes, see ``_TableEvent``).

Three rules cut across every state and are rows with many sources:
a 421 reply ends the session (``server_shutdown``), the server closing the
connection ends it (``connection_lost``; a clean end in ``quit``), and a
reply that breaks the protocol ends it (``protocol_error``).

The machine is a ``transitions.Machine`` (not a GraphMachine, not a
HierarchicalMachine) built once from exactly these rows and shared by every
session, through transitions' public surface only: ``event_cls`` and
``transition_cls`` override the public ``Event.trigger`` and
``Transition.execute``, and sessions are not registered as models (each
keeps its own ``state``).  diagram.py draws the same table, and a test
checks that the runtime machine's edges are the table's.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from transitions import EventData, Machine, MachineError
from transitions.core import Event, Transition

from .auth import Credentials, Mechanism, choose_mechanism
from .extensions import Capabilities
from .replies import Reply


@dataclass(frozen=True)
class StateSpec:
    name: str
    description: str
    rfc: str


@dataclass(frozen=True)
class TransitionSpec:
    trigger: str
    source: str
    dest: str | None  # None: an internal transition (no state change, actions still run)
    conditions: tuple[Callable[[EventData], bool], ...] = ()
    after: tuple[str, ...] = ()
    label: str = ""

    @property
    def condition_names(self) -> tuple[str, ...]:
        return tuple(cond.__name__ for cond in self.conditions)


GREETING = "greeting"
EHLO = "ehlo"
HELO = "helo"
STARTTLS = "starttls"
TLS_HANDSHAKE = "tls_handshake"
AUTH = "auth"
AUTH_RESPONSE = "auth_response"
AUTH_CANCEL = "auth_cancel"
READY = "ready"
ENVELOPE = "envelope"
CONTENT = "content"
DATA_ABORT = "data_abort"
RSET = "rset"
NOOP = "noop"
QUIT = "quit"
CLOSED = "closed"
FAILED = "failed"

STATES: tuple[StateSpec, ...] = (
    StateSpec(GREETING, "connected; waiting for the server's 220 greeting", "RFC 5321 §3.1, §4.3.2"),
    StateSpec(EHLO, "EHLO (LHLO for LMTP) sent; waiting for the capabilities", "RFC 5321 §4.1.1.1, RFC 2033 §4.1"),
    StateSpec(HELO, "EHLO refused; HELO sent instead", "RFC 5321 §4.1.4"),
    StateSpec(STARTTLS, "STARTTLS sent; waiting for 220", "RFC 3207 §4"),
    StateSpec(TLS_HANDSHAKE, "220 to STARTTLS; the caller owes the TLS handshake", "RFC 3207 §4.2"),
    StateSpec(AUTH, "AUTH sent; waiting for 334 or 235", "RFC 4954 §4"),
    StateSpec(AUTH_RESPONSE, "answer to a 334 challenge sent", "RFC 4954 §4"),
    StateSpec(AUTH_CANCEL, "malformed challenge; '*' sent to cancel", "RFC 4954 §4"),
    StateSpec(READY, "session open; no transaction in progress", "RFC 5321 §3.3"),
    StateSpec(ENVELOPE, "MAIL, RCPT (and DATA or BDAT when pipelined) sent; reading their replies",
              "RFC 5321 §3.3, RFC 2920, RFC 3030"),
    StateSpec(CONTENT, "354 received; content and '.' sent; waiting for the final reply", "RFC 5321 §4.1.1.4"),
    StateSpec(DATA_ABORT, "354 although no recipient was accepted; a lone '.' ends the data",
              "RFC 2920 §3.1"),
    StateSpec(RSET, "RSET sent to abandon a transaction", "RFC 5321 §4.1.1.5"),
    StateSpec(NOOP, "NOOP sent", "RFC 5321 §4.1.1.9"),
    StateSpec(QUIT, "QUIT sent; waiting for 221 or the close", "RFC 5321 §4.1.1.10"),
    StateSpec(CLOSED, "the session ended cleanly", "RFC 5321 §3.8"),
    StateSpec(FAILED, "the session ended with an error", "RFC 5321 §3.8"),
)

STATE_NAMES: tuple[str, ...] = tuple(state.name for state in STATES)
INITIAL = GREETING
FINAL_STATES = frozenset({CLOSED, FAILED})
#: States in which the connection is still open and a 421 or a close is an error.
LIVE_STATES: tuple[str, ...] = tuple(name for name in STATE_NAMES if name not in FINAL_STATES and name != QUIT)

#: The trigger each command's reply fires.  ``None`` in a command in flight
#: (see ``pipelined_group``) means the reply is only recorded.
REPLY_TRIGGERS: dict[str, str] = {
    "GREETING": "greeting_reply",
    "EHLO": "ehlo_reply",
    "LHLO": "ehlo_reply",
    "HELO": "helo_reply",
    "STARTTLS": "starttls_reply",
    "AUTH": "auth_reply",
    "MAIL": "envelope_reply",
    "RCPT": "envelope_reply",
    "BDAT": "envelope_reply",
    "DATA": "data_reply",
    "END": "final_reply",  # the end of the content: "." after DATA, or BDAT ... LAST
    "RSET": "rset_reply",
    "NOOP": "noop_reply",
    "QUIT": "quit_reply",
}

#: Replies that are only recorded when the command went out in a pipelined
#: group whose deciding command (DATA or BDAT LAST) is already in flight.
RECORDED_WHEN_PIPELINED = frozenset({"MAIL", "RCPT", "BDAT"})

#: The caller's requests, fired when the session is READY and work is queued.
WORK_TRIGGERS: dict[str, str] = {
    "mail": "begin_mail",
    "noop": "begin_noop",
    "rset": "begin_rset",
    "quit": "begin_quit",
}

#: RFC 5321 §4.1.4: the replies to EHLO after which a client tries HELO.
EHLO_FALLBACK_CODES = frozenset({500, 501, 502, 504, 550})
#: RFC 5321 §3.8: "service not available, closing transmission channel".
SHUTDOWN_CODE = 421
#: RFC 5321 §4.5.3.1.10: "too many recipients"; those recipients go again in
#: a following transaction of the same message.
TOO_MANY_RECIPIENTS = 452


class SessionView(Protocol):
    """What the conditions below read from a session (session.py implements it)."""

    lmtp: bool
    encrypted: bool
    loopback: bool
    starttls_policy: str
    allow_insecure_auth: bool
    pipelining: bool
    credentials: Credentials | None
    auth_mechanism: str | None
    authenticated: bool
    capabilities: Capabilities
    auth_mech: Mechanism | None
    auth_step: int

    def transaction_view(self) -> TransactionView: ...

    def next_work_is_mail(self) -> bool: ...

    def next_in_flight(self) -> bool: ...

    def abandoning(self) -> bool: ...

    def auth_initial_owed(self) -> bool: ...


class TransactionView(Protocol):
    round_ok: bool
    sender_ok: bool
    accepted_count: int
    rcpt_outstanding: int
    deferred_count: int
    chunk_failed: bool
    chunked: bool


# --- conditions: pure functions of the session and the reply ---------------

def reply_of(ev: EventData) -> Reply:
    """The reply a trigger was fired with (its first argument)."""
    return cast("tuple[Reply, ...]", ev.args)[0]


def source_of(ev: EventData) -> str:
    """The state the transition being taken started from."""
    assert ev.transition is not None
    return str(ev.transition.source)


def _session(ev: EventData) -> SessionView:
    return cast(SessionView, ev.model)


def positive(ev: EventData) -> bool:
    """2xx."""
    return 200 <= reply_of(ev).code < 300


def refused(ev: EventData) -> bool:
    """Anything but the expected positive reply (the rows before it took those)."""
    return True


# RFC 5321 §4.2: a client acts on the first digit of a code it does not know, so the
# conditions below test a reply's class; the exact codes (220, 334, 354) are its usual members.

def service_ready(ev: EventData) -> bool:
    """2xx (220): the greeting, or the go-ahead for the TLS handshake."""
    return reply_of(ev).code // 100 == 2


def challenge(ev: EventData) -> bool:
    """3xx (334): the server sends a SASL challenge."""
    return reply_of(ev).code // 100 == 3


def start_data(ev: EventData) -> bool:
    """3xx (354): send the content."""
    return reply_of(ev).code // 100 == 3


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
    s = _session(ev)
    return s.starttls_policy == "required" and not s.encrypted


def starttls_offered(ev: EventData) -> bool:
    s = _session(ev)
    return not s.encrypted and s.starttls_policy != "never" and s.capabilities.starttls


def auth_wanted(ev: EventData) -> bool:
    s = _session(ev)
    return s.credentials is not None and not s.authenticated


def auth_in_clear(ev: EventData) -> bool:
    """Credentials would cross an unencrypted link to a host that is not loopback."""
    s = _session(ev)
    return auth_wanted(ev) and not s.encrypted and not s.loopback and not s.allow_insecure_auth


def auth_unavailable(ev: EventData) -> bool:
    s = _session(ev)
    if not auth_wanted(ev) or s.credentials is None:
        return False
    return choose_mechanism(s.capabilities.auth_mechanisms, s.credentials, s.auth_mechanism) is None


def challenge_valid(ev: EventData) -> bool:
    """The 334 text is base64 and the mechanism expects another step (or the initial
    response that was too long for the AUTH line is owed, RFC 4954 §4)."""
    s = _session(ev)
    if s.auth_mech is None or (s.auth_step >= s.auth_mech.max_steps and not s.auth_initial_owed()):
        return False
    try:
        base64.b64decode(reply_of(ev).lines[0].strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def transaction_doomed(ev: EventData) -> bool:
    """MAIL or a chunk refused, or every recipient answered and none accepted."""
    tx = _session(ev).transaction_view()
    if not tx.sender_ok or tx.chunk_failed:
        return True
    return tx.rcpt_outstanding == 0 and tx.accepted_count == 0


def recipients_accepted(ev: EventData) -> bool:
    tx = _session(ev).transaction_view()
    return tx.sender_ok and tx.accepted_count > 0


def pipeline_next(ev: EventData) -> bool:
    """PIPELINING in use and another message is queued: send its group with this content."""
    s = _session(ev)
    tx = s.transaction_view()
    return s.pipelining and s.capabilities.pipelining and tx.deferred_count == 0 and s.next_work_is_mail()


def retry_deferred(ev: EventData) -> bool:
    """Some recipients got 452 and this round delivered to others: send the message again to them."""
    tx = _session(ev).transaction_view()
    return tx.deferred_count > 0 and tx.round_ok


def chunk_refused(ev: EventData) -> bool:
    """A chunk of a BDAT transaction was refused (even if BDAT LAST then got 250): RSET, so the
    next transaction starts clean (RFC 3030 §2: no more chunks after a failed one)."""
    tx = _session(ev).transaction_view()
    return tx.chunked and tx.chunk_failed


def next_in_flight(ev: EventData) -> bool:
    return _session(ev).next_in_flight()


def abandoning(ev: EventData) -> bool:
    """This RSET ends a failed transaction (not one the caller asked for)."""
    return _session(ev).abandoning()


# --- the transitions ---------------------------------------------------------

def _t(trigger: str, source: str, dest: str | None, conditions: Sequence[Callable[[EventData], bool]] = (),
       after: Sequence[str] = (), label: str = "") -> TransitionSpec:
    return TransitionSpec(trigger, source, dest, tuple(conditions), tuple(after), label)


def _session_open(trigger: str, source: str, code: Callable[[EventData], bool], label: str) -> list[TransitionSpec]:
    """The rows that end session setup: AUTH if the caller gave credentials, else READY."""
    return [
        _t(trigger, source, QUIT, [code, auth_in_clear], ["fail_auth_in_clear", "send_quit"],
           f"{label}, AUTH would be in clear"),
        _t(trigger, source, QUIT, [code, auth_unavailable], ["fail_auth_unavailable", "send_quit"],
           f"{label}, no usable AUTH"),
        _t(trigger, source, AUTH, [code, auth_wanted], ["send_auth"], f"{label}, credentials given"),
        _t(trigger, source, READY, [code], ["session_ready"], label),
    ]


TRANSITIONS: tuple[TransitionSpec, ...] = (
    # greeting
    _t("greeting_reply", GREETING, EHLO, [service_ready], ["send_ehlo"], "220"),
    _t("greeting_reply", GREETING, QUIT, [], ["fail_greeting", "send_quit"], "554 or other"),
    # EHLO / LHLO
    _t("ehlo_reply", EHLO, QUIT, [tls_required_missing], ["fail_tls_unavailable", "send_quit"],
       "no STARTTLS, TLS required"),
    _t("ehlo_reply", EHLO, STARTTLS, [positive, starttls_offered], ["send_starttls"], "250, STARTTLS offered"),
    *_session_open("ehlo_reply", EHLO, positive, "250"),
    _t("ehlo_reply", EHLO, HELO, [ehlo_unsupported], ["send_helo"], "500/501/502/504/550"),
    _t("ehlo_reply", EHLO, QUIT, [], ["fail_reply", "send_quit"], "other"),
    # HELO fallback: no extensions, so no AUTH
    _t("helo_reply", HELO, QUIT, [positive, auth_wanted], ["fail_auth_unavailable", "send_quit"],
       "250, credentials given"),
    _t("helo_reply", HELO, READY, [positive], ["session_ready"], "250"),
    _t("helo_reply", HELO, QUIT, [], ["fail_reply", "send_quit"], "other"),
    # STARTTLS (RFC 3207): never pipelined; nothing may follow the 220
    _t("starttls_reply", STARTTLS, TLS_HANDSHAKE, [service_ready], ["request_handshake"], "220"),
    _t("starttls_reply", STARTTLS, QUIT, [tls_required], ["fail_tls_unavailable", "send_quit"],
       "refused, TLS required"),
    *_session_open("starttls_reply", STARTTLS, refused, "refused, opportunistic"),
    _t("tls_established", TLS_HANDSHAKE, EHLO, [], ["forget_capabilities", "send_ehlo"], "handshake done"),
    # AUTH (RFC 4954)
    _t("auth_reply", AUTH, AUTH_RESPONSE, [challenge, challenge_valid], ["send_auth_response"], "334"),
    _t("auth_reply", AUTH_RESPONSE, AUTH_RESPONSE, [challenge, challenge_valid], ["send_auth_response"], "334"),
    _t("auth_reply", AUTH, AUTH_CANCEL, [challenge], ["send_auth_cancel"], "334 malformed"),
    _t("auth_reply", AUTH_RESPONSE, AUTH_CANCEL, [challenge], ["send_auth_cancel"], "334 malformed"),
    _t("auth_reply", AUTH, READY, [positive], ["mark_authenticated", "session_ready"], "235"),
    _t("auth_reply", AUTH_RESPONSE, READY, [positive], ["mark_authenticated", "session_ready"], "235"),
    _t("auth_reply", AUTH, QUIT, [], ["fail_auth", "send_quit"], "535/534/538/454..."),
    _t("auth_reply", AUTH_RESPONSE, QUIT, [], ["fail_auth", "send_quit"], "535/534/538/454..."),
    _t("auth_reply", AUTH_CANCEL, QUIT, [], ["fail_auth", "send_quit"], "501 or other"),
    # the caller's work
    _t("begin_mail", READY, ENVELOPE, [], ["send_transaction"], "send a message"),
    _t("begin_noop", READY, NOOP, [], ["send_noop"], "noop()"),
    _t("begin_rset", READY, RSET, [], ["send_rset"], "rset()"),
    _t("begin_quit", READY, QUIT, [], ["send_quit"], "quit()"),
    # the transaction: MAIL, RCPT... then DATA or BDAT
    _t("envelope_reply", ENVELOPE, RSET, [transaction_doomed], ["send_rset"],
       "sender, chunk or every recipient refused"),
    _t("envelope_reply", ENVELOPE, None, [], ["send_next_held"], "reply recorded, next command"),
    _t("data_reply", ENVELOPE, CONTENT, [start_data, recipients_accepted, pipeline_next],
       ["send_content", "send_next_transaction"], "354, next message queued"),
    _t("data_reply", ENVELOPE, CONTENT, [start_data, recipients_accepted], ["send_content"], "354"),
    _t("data_reply", ENVELOPE, DATA_ABORT, [start_data], ["send_lone_dot"], "354, nobody accepted"),
    _t("data_reply", ENVELOPE, RSET, [], ["send_rset"], "DATA refused"),
    _t("final_reply", DATA_ABORT, RSET, [], ["send_rset"], "any"),
    *(
        row
        for source in (CONTENT, ENVELOPE)
        for row in (
            # The first three rows exclude each other (the next message is pipelined only
            # when no 452 retry is due, and never with BDAT); the common one goes first.
            _t("final_reply", source, ENVELOPE, [next_in_flight], ["finish_transaction"],
               "final, next message in flight"),
            _t("final_reply", source, ENVELOPE, [retry_deferred], ["send_retry"],
               "final, 452 recipients left"),
            _t("final_reply", source, RSET, [chunk_refused], ["send_rset"],
               "BDAT refused"),
            _t("final_reply", source, READY, [], ["finish_transaction"], "final"),
        )
    ),
    _t("rset_reply", RSET, READY, [positive, abandoning], ["finish_transaction"], "250, transaction abandoned"),
    _t("rset_reply", RSET, READY, [positive], ["command_done"], "250"),
    # The abandoned message's result is known already: report it before giving up.
    _t("rset_reply", RSET, QUIT, [abandoning], ["finish_transaction", "fail_reply", "send_quit"],
       "refused, transaction abandoned"),
    _t("rset_reply", RSET, QUIT, [], ["fail_reply", "send_quit"], "other"),
    _t("noop_reply", NOOP, READY, [positive], ["command_done"], "250"),
    _t("noop_reply", NOOP, QUIT, [], ["fail_reply", "send_quit"], "other"),
    # the end
    _t("quit_reply", QUIT, CLOSED, [], ["closed_cleanly"], "221 or any"),
    _t("connection_lost", QUIT, CLOSED, [], ["closed_cleanly"], "server closed"),
    *(_t("connection_lost", source, FAILED, [], ["fail_disconnected"], "server closed") for source in LIVE_STATES),
    *(_t("server_shutdown", source, FAILED, [], ["fail_shutdown"], "421") for source in LIVE_STATES),
    *(
        _t("protocol_error", source, FAILED, [], ["fail_protocol"], "broken reply")
        for source in (*LIVE_STATES, QUIT)
    ),
)

TRIGGERS: tuple[str, ...] = tuple(dict.fromkeys(t.trigger for t in TRANSITIONS))


def edges() -> set[tuple[str, str, str]]:
    """(source, trigger, destination) of every row; an internal row loops on its source."""
    return {(t.source, t.trigger, t.dest or t.source) for t in TRANSITIONS}


class _TableTransition(Transition):
    """A row of the table: its conditions in order, the state change, its ``after`` actions.

    transitions' own ``execute`` also runs prepare/before callbacks and machine-wide
    hooks and logs eight debug lines per row tried; the table uses none of those hooks
    (``build_machine`` checks), and that overhead was most of a trigger's 11 µs.  The
    semantics the table relies on -- rows tried in order, the first whose conditions
    all hold is taken, then its actions run -- are kept exactly.
    """

    def execute(self, event_data: EventData) -> bool:
        for condition in self.conditions:
            if not cast("Callable[[EventData], bool]", condition.func)(event_data):
                return False
        if self.dest is not None:
            machine = event_data.machine
            setattr(event_data.model, machine.model_attribute, self.dest)
            event_data.state = machine.states[self.dest]
        model = event_data.model
        for action in self.after:
            getattr(model, cast(str, action))(event_data)
        return True


class _TableEvent(Event):
    """A trigger: looks up the rows for the model's state and takes the first that applies.

    Unlike transitions' ``Event.trigger`` it has no queue, no prepare/finalize hooks and
    no exception hook (the table uses none; ``build_machine`` checks); an unknown
    (trigger, state) pair still raises ``MachineError``.
    """

    def trigger(self, model: Any, *args: Any, **kwargs: Any) -> bool:
        machine = self.machine
        state = machine.states[getattr(model, machine.model_attribute)]
        rows = self.transitions.get(state.name)
        if rows is None:
            raise MachineError(f"Can't trigger event {self.name} from state {state.name}!")
        event_data = EventData(state, self, machine, model, args, kwargs)
        for row in rows:
            event_data.transition = row
            if row.execute(event_data):
                event_data.result = True
                return True
        return False


class SessionMachine(Machine):
    """A plain Machine whose rows and triggers are the table's (``transition_cls``, ``event_cls``).

    It has no models: sessions are never registered (``model=None``).  Each keeps its
    own ``state`` attribute and fires ``MACHINE.events[name].trigger(session, ...)``,
    the pattern transitions' FAQ gives for many short-lived models on one class-level
    machine.  So nothing is bound onto a session (transitions would add a method per
    trigger and per state, about 16 KiB), nothing holds it (a session dropped without
    ``close()`` is collected), and a trigger changes nothing shared: the machine is safe
    to use from many threads, each with its own sessions.
    """

    transition_cls = _TableTransition
    event_cls = _TableEvent


def build_machine() -> SessionMachine:
    """The runtime machine: exactly the rows of ``TRANSITIONS``, nothing more."""
    machine = SessionMachine(
        model=None,
        states=list(STATE_NAMES),
        initial=INITIAL,
        transitions=[
            {
                "trigger": t.trigger,
                "source": t.source,
                "dest": t.dest,
                "conditions": list(t.conditions),
                "after": list(t.after),
            }
            for t in TRANSITIONS
        ],
        auto_transitions=False,
        send_event=True,
        ignore_invalid_triggers=False,
    )
    # The lean rows and events above skip transitions' hooks; none may be in use.
    hooks = [machine.prepare_event, machine.finalize_event, machine.before_state_change,
             machine.after_state_change, machine.on_exception, machine.on_final]
    rows = [row for event in machine.events.values() for group in event.transitions.values() for row in group]
    hooks += [row.prepare for row in rows] + [row.before for row in rows]
    hooks += [state.on_enter for state in machine.states.values()]
    hooks += [state.on_exit for state in machine.states.values()]
    plain = all(callable(c.func) and c.target is True for row in rows for c in row.conditions)
    named = all(isinstance(action, str) for row in rows for action in row.after)
    if any(hooks) or machine.has_queue or not plain or not named:
        raise RuntimeError("the protocol machine uses only callable conditions and named after-actions")
    return machine


MACHINE = build_machine()
