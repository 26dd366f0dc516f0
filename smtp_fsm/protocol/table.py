"""The protocol table: every SMTP phase, every move between them, and the rules across them.

Theory of operation
===================

An SMTP client waits, almost all of the time, for one particular reply.
Each state below names what it is waiting for (the greeting, the answer to
EHLO, to STARTTLS, to AUTH, to MAIL FROM, to each RCPT TO, to DATA or a BDAT
chunk, to the end of the data, to RSET, to QUIT), and each row names the
reply or the caller's request that moves it on.

Replies are matched, in order, to the commands in flight (RFC 2920 §3.1:
one reply per command, never more).  Each command names the trigger its
reply fires (``REPLY_TRIGGERS``).  Before a trigger fires, the reply is
recorded on the message it answers (``RECORDERS``, rules.py: 2xx accepted,
452 deferred, anything else refused); then the trigger's rows for the
current state are tried in table order and the first whose conditions all
hold is taken, so a trigger with several rows reads like a small decision
list.  A row's ``after`` actions are what the client then *does*; the
session's private model (_model.py) implements each as "encode this command
and queue it" or "report this result", and decides nothing.

The mail transaction is the same machine with or without PIPELINING.  In
lockstep each command waits for the reply before it: ``mail`` -> ``rcpt``
(once per recipient) -> ``data`` -> ``content`` (or ``bdat`` chunks, then
``content`` after BDAT LAST).  Pipelined (RFC 2920), MAIL, every RCPT and
DATA go out at once and the state is ``data`` straight away: the replies to
MAIL and RCPT then arrive in ``data`` and are only recorded -- rows marked
``recorded``, drawn dashed -- and DATA's reply decides with all of them
known.  With CHUNKING the last BDAT plays DATA's part and the state is
``content``.  LMTP (RFC 2033 §4.2) answers the data once per accepted
recipient: all but the last reply are recorded, the last one decides.  When
another message is queued, its MAIL, RCPT and DATA go out with this one's
content and the state stays ``data``: this message's final reply arrives
there and is recorded too -- its row reports the result, but decides
nothing, since the next message is in flight whatever it says -- and the
next 354 decides.  So a stream of pipelined messages costs one trigger per
message (the last one's final reply is the only other), and a chunked one
one: triggers, not table look-ups, set the engine's cost.

Rules across every state (``SESSION_RULES``), applied by the session before
a reply's own trigger: a 421 ends the session (``server_shutdown``, RFC 5321
§3.8) except after QUIT; a reply with no command waiting for it, bytes that
arrive while the client owes the TLS handshake (``SILENT_STATES``), and a
trigger with no row for the state all break the protocol
(``protocol_error``); the server closing the connection ends the session
(``connection_lost``; a clean end in ``quit``).  The caller may end it in
any state too: ``close()`` (``close``, to ``closed``) or ``close(reason)``
(``abandon``, to ``failed``: a timeout, a failed TLS handshake).

Every ending reaches ``closed`` or ``failed``, and the session reports it
the same way whichever it was (session.py's life cycle): an error is raised
by ``next_event`` once, then one ``Closed`` event ends the session.

runtime.py builds the ``transitions`` machine from exactly these rows;
diagram.py draws them; a trace records the index of each row taken.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from transitions import EventData

from ..replies import Reply
from .rules import (
    SHUTDOWN_CODE,
    Recorder,
    abandoning,
    auth_in_clear,
    auth_unavailable,
    auth_wanted,
    challenge,
    challenge_valid,
    chunk_refused,
    chunking,
    ehlo_unsupported,
    last_chunk_next,
    lmtp,
    nobody_accepted,
    otherwise,
    pipeline_next,
    pipelined,
    positive,
    quit_after_auth,
    quit_after_banner,
    quit_after_ehlo,
    quit_after_mail,
    quit_after_rcpt,
    quit_after_tls,
    recipients_accepted,
    recipients_left,
    record_chunk,
    record_data,
    record_ehlo,
    record_end,
    record_mail,
    record_rcpt,
    resend_due,
    retry_deferred,
    rset_due,
    service_ready,
    start_data,
    starttls_offered,
    tls_required,
    tls_required_missing,
    transaction_over,
    window_behind,
    window_clear,
    window_reset,
    window_room,
)

Condition = Callable[[EventData], bool]

#: The phases a state belongs to: the CLI's exit codes and the diagram's views read them.
SETUP, WORK, TRANSACTION, END = "setup", "work", "transaction", "end"


@dataclass(frozen=True)
class StateSpec:
    name: str
    description: str
    rfc: str
    phase: str


@dataclass(frozen=True)
class TransitionSpec:
    trigger: str
    source: str
    dest: str | None  # None: an internal transition (no state change, actions still run)
    conditions: tuple[Condition, ...] = ()
    after: tuple[str, ...] = ()
    label: str = ""
    #: A reply only noted on its message (its command went out before the one that decides): no
    #: condition, no state change; the engine takes it without a trigger (running its actions, if
    #: any: a pipelined message's final reply reports its result), a trace records it, the diagram
    #: draws it dashed.
    recorded: bool = False
    index: int = -1  # the row's position in TRANSITIONS (traces record it)

    @property
    def condition_names(self) -> tuple[str, ...]:
        return tuple(cond.__name__ for cond in self.conditions)


class State(StrEnum):
    """The states by name (``ClientSession.state``); each member is its name as a string.

    Its repr is the string's (``'ready'``), so messages that show a state read the same
    whether they were given a ``State`` or the table's plain name.
    """

    GREETING = "greeting"
    EHLO = "ehlo"
    HELO = "helo"
    STARTTLS = "starttls"
    TLS_HANDSHAKE = "tls_handshake"
    AUTH = "auth"
    AUTH_RESPONSE = "auth_response"
    AUTH_CANCEL = "auth_cancel"
    READY = "ready"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"
    BDAT = "bdat"
    CONTENT = "content"
    DATA_ABORT = "data_abort"
    RSET = "rset"
    NOOP = "noop"
    QUIT = "quit"
    CLOSED = "closed"
    FAILED = "failed"

    def __repr__(self) -> str:
        return repr(self.value)


# The rows name states by plain strings (what transitions keeps on the model), in State's order.
(GREETING, EHLO, HELO, STARTTLS, TLS_HANDSHAKE, AUTH, AUTH_RESPONSE, AUTH_CANCEL, READY, MAIL, RCPT, DATA, BDAT,
 CONTENT, DATA_ABORT, RSET, NOOP, QUIT, CLOSED, FAILED) = (str(state.value) for state in State)

STATES: tuple[StateSpec, ...] = (
    StateSpec(GREETING, "connected; waiting for the server's 220 greeting", "RFC 5321 §3.1, §4.3.2", SETUP),
    StateSpec(EHLO, "EHLO (LHLO for LMTP) sent; waiting for the capabilities", "RFC 5321 §4.1.1.1, RFC 2033 §4.1",
              SETUP),
    StateSpec(HELO, "EHLO refused; HELO sent instead", "RFC 5321 §4.1.4", SETUP),
    StateSpec(STARTTLS, "STARTTLS sent; waiting for 220", "RFC 3207 §4", SETUP),
    StateSpec(TLS_HANDSHAKE, "220 to STARTTLS; the caller owes the TLS handshake", "RFC 3207 §4.2", SETUP),
    StateSpec(AUTH, "AUTH sent; waiting for 334 or 235", "RFC 4954 §4", SETUP),
    StateSpec(AUTH_RESPONSE, "answer to a 334 challenge sent", "RFC 4954 §4", SETUP),
    StateSpec(AUTH_CANCEL, "malformed challenge; '*' sent to cancel", "RFC 4954 §4", SETUP),
    StateSpec(READY, "session open; no transaction in progress", "RFC 5321 §3.3", WORK),
    StateSpec(MAIL, "MAIL FROM sent; waiting for its reply", "RFC 5321 §4.1.1.2", TRANSACTION),
    StateSpec(RCPT, "RCPT TO sent; waiting for its reply (once per recipient)", "RFC 5321 §4.1.1.3", TRANSACTION),
    StateSpec(DATA, "DATA sent (pipelined: with MAIL and RCPT); waiting for 354", "RFC 5321 §4.1.1.4, RFC 2920",
              TRANSACTION),
    StateSpec(BDAT, "a BDAT chunk sent; waiting for its reply", "RFC 3030 §2", TRANSACTION),
    StateSpec(CONTENT, "the content sent ('.' after 354, or BDAT LAST); waiting for the final reply",
              "RFC 5321 §4.1.1.4, RFC 3030 §2, RFC 2033 §4.2", TRANSACTION),
    StateSpec(DATA_ABORT, "354 although no recipient was accepted; a lone '.' ends the data", "RFC 2920 §3.1",
              TRANSACTION),
    StateSpec(RSET, "RSET sent to abandon a transaction (or asked for)", "RFC 5321 §4.1.1.5", WORK),
    StateSpec(NOOP, "NOOP sent", "RFC 5321 §4.1.1.9", WORK),
    StateSpec(QUIT, "QUIT sent; waiting for 221 or the close", "RFC 5321 §4.1.1.10", END),
    StateSpec(CLOSED, "the session is over: after QUIT, or close()", "RFC 5321 §3.8", END),
    StateSpec(FAILED, "the session broke off: 421, the connection lost, a broken reply, or close(reason)",
              "RFC 5321 §3.8", END),
)

STATE_NAMES: tuple[str, ...] = tuple(state.name for state in STATES)
INITIAL = GREETING
FINAL_STATES = frozenset({CLOSED, FAILED})
#: States in which the connection is still open and a 421 or a close is an error.
LIVE_STATES: tuple[str, ...] = tuple(name for name in STATE_NAMES if name not in FINAL_STATES and name != QUIT)
#: Session setup: an error in these states means no session was established (CLI exit code 3).
SETUP_STATES: frozenset[str] = frozenset(state.name for state in STATES if state.phase == SETUP)
#: States in which the server owes nothing: any byte received then was injected (RFC 3207 §4.2;
#: the NO STARTTLS study, USENIX Security 2021: bytes before the handshake must not be read as TLS's).
SILENT_STATES = frozenset({TLS_HANDSHAKE})

#: Each command: the trigger its reply fires, and what the reply records on its message
#: first (rules.py: accepted, deferred, refused; the capabilities EHLO lists).
COMMANDS: dict[str, tuple[str, Recorder | None]] = {
    "GREETING": ("greeting_reply", None),
    "EHLO": ("ehlo_reply", record_ehlo),
    "LHLO": ("ehlo_reply", record_ehlo),
    "HELO": ("helo_reply", None),
    "STARTTLS": ("starttls_reply", None),
    "AUTH": ("auth_reply", None),
    "MAIL": ("mail_reply", record_mail),
    "RCPT": ("rcpt_reply", record_rcpt),
    "BDAT": ("chunk_reply", record_chunk),
    "DATA": ("data_reply", record_data),
    "END": ("final_reply", record_end),  # the end of the content: "." after DATA, or BDAT ... LAST
    "RSET": ("rset_reply", None),
    "NOOP": ("noop_reply", None),
    "QUIT": ("quit_reply", None),
}
REPLY_TRIGGERS: dict[str, str] = {verb: trigger for verb, (trigger, _) in COMMANDS.items()}
RECORDERS: dict[str, Recorder] = {verb: record for verb, (_, record) in COMMANDS.items() if record is not None}
#: LMTP: the reply to the end of the data for one recipient that is not the last (recorded).
DELIVERY_REPLY = "delivery_reply"

#: The caller's requests, fired when the session is READY and work is queued.
WORK_TRIGGERS: dict[str, str] = {
    "mail": "begin_mail",
    "noop": "begin_noop",
    "rset": "begin_rset",
    "quit": "begin_quit",
}

SERVER_SHUTDOWN = "server_shutdown"
CONNECTION_LOST = "connection_lost"
PROTOCOL_ERROR = "protocol_error"
TLS_ESTABLISHED = "tls_established"
#: The caller's close(): the session ends where it is (the caller's own rules, not the server's).
CLOSE = "close"
ABANDON = "abandon"

#: What each reply trigger answers, as the protocol names it (the diagrams' labels say "250 to EHLO").
REPLY_TO: dict[str, str] = {
    "greeting_reply": "the greeting", "ehlo_reply": "EHLO", "helo_reply": "HELO", "starttls_reply": "STARTTLS",
    "auth_reply": "AUTH", "mail_reply": "MAIL FROM", "rcpt_reply": "RCPT TO", "chunk_reply": "BDAT",
    "data_reply": "DATA", "final_reply": "the end of data", "delivery_reply": "the end of data (LMTP)",
    "rset_reply": "RSET", "noop_reply": "NOOP", "quit_reply": "QUIT",
}
#: The other triggers, in the protocol's (or the caller's) words; ``{label}`` is the row's label.
EVENT_WORDS: dict[str, str] = {
    "begin_mail": "caller: {label}", "begin_noop": "caller: noop(), C: NOOP", "begin_rset": "caller: rset(), C: RSET",
    "begin_quit": "caller: quit(), C: QUIT", TLS_ESTABLISHED: "TLS {label}",
    CONNECTION_LOST: "the server closes the connection", SERVER_SHUTDOWN: "421: the server shuts down",
    PROTOCOL_ERROR: "a broken reply", CLOSE: "caller: close()", ABANDON: "caller: close(reason)",
}

#: The rules that hold in every live state, in the order the session applies them.
SESSION_RULES: tuple[tuple[str, str], ...] = (
    (SERVER_SHUTDOWN, "a 421 reply, whatever it answers (except QUIT): the session ends (RFC 5321 §3.8)"),
    (PROTOCOL_ERROR, "a reply no command waits for (RFC 2920 §3.1), bytes while the TLS handshake is owed "
                     "(RFC 3207 §4.2), a reply no row takes, or a reply that does not parse (RFC 5321 §4.2)"),
    (CONNECTION_LOST, "the server closed the connection (a clean end after QUIT)"),
    (CLOSE, "the caller closed the session (close()): it is over, cleanly"),
    (ABANDON, "the caller gave up on it (close(reason): a timeout, a failed TLS handshake): it failed"),
)


def reply_trigger(reply: Reply, expected: str | None, state: str) -> str:
    """The trigger a reply fires: a session rule first, else its command's (``expected``)."""
    if reply.code == SHUTDOWN_CODE and state != QUIT:
        return SERVER_SHUTDOWN
    return PROTOCOL_ERROR if expected is None else expected


# --- the transitions ---------------------------------------------------------

def _t(trigger: str, source: str, dest: str | None, conditions: Sequence[Condition] = (),
       after: Sequence[str] = (), label: str = "") -> TransitionSpec:
    return TransitionSpec(trigger, source, dest, tuple(conditions), tuple(after), label)


def _recorded(trigger: str, source: str, label: str, after: Sequence[str] = ()) -> TransitionSpec:
    return TransitionSpec(trigger, source, None, after=tuple(after), label=label, recorded=True)


def _session_open(trigger: str, source: str, code: Condition, label: str) -> list[TransitionSpec]:
    """The rows that end session setup: AUTH if the caller gave credentials, else READY."""
    return [
        _t(trigger, source, QUIT, [code, auth_in_clear], ["fail_auth_in_clear", "send_quit"],
           f"{label}, AUTH would be in clear"),
        _t(trigger, source, QUIT, [code, auth_unavailable], ["fail_auth_unavailable", "send_quit"],
           f"{label}, no usable AUTH"),
        _t(trigger, source, AUTH, [code, auth_wanted], ["send_auth"], f"{label}, credentials given"),
        _t(trigger, source, READY, [code], ["session_ready"], label),
    ]


def _hello(trigger: str, source: str, conditions: Sequence[Condition], label: str) -> list[TransitionSpec]:
    """The rows that say hello: LHLO for LMTP (RFC 2033 §4.1), else EHLO."""
    return [
        _t(trigger, source, EHLO, [lmtp, *conditions], ["send_lhlo"], f"{label}, LMTP"),
        _t(trigger, source, EHLO, conditions, ["send_ehlo"], label),
    ]


def _round(trigger: str, source: str, conditions: Sequence[Condition], start: str, label: str
           ) -> list[TransitionSpec]:
    """The rows that start a round of a transaction (``start`` picks the message and recipients)."""
    return [
        # with CHUNKING the next queued messages follow at once, up to the window (bdat_window)
        _t(trigger, source, CONTENT, [*conditions, chunking, pipelined], [start, "send_group", "fill_window"],
           f"{label}: MAIL, RCPT..., BDAT... at once"),
        _t(trigger, source, DATA, [*conditions, pipelined], [start, "send_group"],
           f"{label}: MAIL, RCPT..., DATA at once"),
        _t(trigger, source, MAIL, conditions, [start, "send_mail"], f"{label}: MAIL FROM"),
    ]


def _content(conditions: Sequence[Condition], after: Sequence[str], dest: str, label: str) -> list[TransitionSpec]:
    """The rows after a 354 that send the content: LMTP awaits a reply per accepted recipient."""
    return [
        # lmtp first: for SMTP the row is ruled out by one cheap test
        _t("data_reply", DATA, dest, [lmtp, *conditions], ["send_content_lmtp", *after],
           f"{label}, LMTP: a reply per recipient"),
        _t("data_reply", DATA, dest, conditions, ["send_content", *after], label),
    ]


_ROWS: tuple[TransitionSpec, ...] = (
    # greeting
    _t("greeting_reply", GREETING, QUIT, [service_ready, quit_after_banner], ["stop_work", "send_quit"],
       "220, quit_after banner"),
    *_hello("greeting_reply", GREETING, [service_ready], "220"),
    _t("greeting_reply", GREETING, QUIT, [], ["fail_greeting", "send_quit"], "554 or other"),
    # EHLO / LHLO
    _t("ehlo_reply", EHLO, QUIT, [tls_required_missing], ["fail_tls_unavailable", "send_quit"],
       "no STARTTLS, TLS required"),
    _t("ehlo_reply", EHLO, QUIT, [positive, quit_after_ehlo], ["stop_work", "send_quit"], "250, quit_after ehlo"),
    _t("ehlo_reply", EHLO, STARTTLS, [positive, starttls_offered], ["send_starttls"], "250, STARTTLS offered"),
    *_session_open("ehlo_reply", EHLO, positive, "250"),
    _t("ehlo_reply", EHLO, HELO, [ehlo_unsupported], ["send_helo"], "500/501/502/504/550"),
    _t("ehlo_reply", EHLO, QUIT, [], ["fail_reply", "send_quit"], "other"),
    # HELO fallback: no extensions, so no AUTH
    _t("helo_reply", HELO, QUIT, [positive, quit_after_ehlo], ["stop_work", "send_quit"], "250, quit_after ehlo"),
    _t("helo_reply", HELO, QUIT, [positive, auth_wanted], ["fail_auth_unavailable", "send_quit"],
       "250, credentials given"),
    _t("helo_reply", HELO, READY, [positive], ["session_ready"], "250"),
    _t("helo_reply", HELO, QUIT, [], ["fail_reply", "send_quit"], "other"),
    # STARTTLS (RFC 3207): never pipelined; nothing may follow the 220
    _t("starttls_reply", STARTTLS, TLS_HANDSHAKE, [service_ready], ["request_handshake"], "220"),
    _t("starttls_reply", STARTTLS, QUIT, [tls_required], ["fail_tls_unavailable", "send_quit"],
       "refused, TLS required"),
    *_session_open("starttls_reply", STARTTLS, otherwise, "refused, opportunistic"),
    _t(TLS_ESTABLISHED, TLS_HANDSHAKE, QUIT, [quit_after_tls], ["stop_work", "send_quit"],
       "handshake done, quit_after tls"),
    *(
        replace(row, after=("forget_capabilities", *row.after))
        for row in _hello(TLS_ESTABLISHED, TLS_HANDSHAKE, [], "handshake done")
    ),
    # AUTH (RFC 4954)
    _t("auth_reply", AUTH, AUTH_RESPONSE, [challenge, challenge_valid], ["send_auth_response"], "334"),
    _t("auth_reply", AUTH_RESPONSE, AUTH_RESPONSE, [challenge, challenge_valid], ["send_auth_response"], "334"),
    _t("auth_reply", AUTH, AUTH_CANCEL, [challenge], ["send_auth_cancel"], "334 malformed"),
    _t("auth_reply", AUTH_RESPONSE, AUTH_CANCEL, [challenge], ["send_auth_cancel"], "334 malformed"),
    *(
        _t("auth_reply", source, QUIT, [positive, quit_after_auth], ["mark_authenticated", "stop_work", "send_quit"],
           "235, quit_after auth")
        for source in (AUTH, AUTH_RESPONSE)
    ),
    _t("auth_reply", AUTH, READY, [positive], ["mark_authenticated", "session_ready"], "235"),
    _t("auth_reply", AUTH_RESPONSE, READY, [positive], ["mark_authenticated", "session_ready"], "235"),
    _t("auth_reply", AUTH, QUIT, [], ["fail_auth", "send_quit"], "535/534/538/454..."),
    _t("auth_reply", AUTH_RESPONSE, QUIT, [], ["fail_auth", "send_quit"], "535/534/538/454..."),
    _t("auth_reply", AUTH_CANCEL, QUIT, [], ["fail_auth", "send_quit"], "501 or other"),
    # the caller's work
    *_round("begin_mail", READY, [], "take_message", "send a message"),
    _t("begin_mail", CONTENT, None, [window_room], ["fill_window"], "send a message behind those in flight"),
    _t("begin_mail", CONTENT, None, [], [], "wait: the window is full, or the next message has another envelope"),
    _t("begin_noop", READY, NOOP, [], ["take_command", "send_noop"], "noop()"),
    _t("begin_rset", READY, RSET, [], ["take_command", "send_rset"], "rset()"),
    _t("begin_quit", READY, QUIT, [], ["take_command", "send_quit"], "quit()"),
    # the transaction in lockstep: MAIL, then RCPT per recipient, then DATA or BDAT chunks
    # (a probe, quit_after mail or rcpt, stops there: its result says who was accepted)
    _t("mail_reply", MAIL, QUIT, [quit_after_mail], ["finish_probe", "send_quit"], "any, quit_after mail"),
    _t("mail_reply", MAIL, RCPT, [positive], ["send_rcpt"], "250: RCPT TO"),
    _t("mail_reply", MAIL, QUIT, [quit_after_rcpt], ["finish_probe", "send_quit"], "sender refused, quit_after rcpt"),
    _t("mail_reply", MAIL, RSET, [], ["send_rset"], "sender refused"),
    _t("rcpt_reply", RCPT, RCPT, [recipients_left], ["send_rcpt"], "next RCPT TO"),
    _t("rcpt_reply", RCPT, QUIT, [quit_after_rcpt], ["finish_probe", "send_quit"], "last RCPT, quit_after rcpt"),
    _t("rcpt_reply", RCPT, RSET, [nobody_accepted], ["send_rset"], "no recipient accepted"),
    _t("rcpt_reply", RCPT, CONTENT, [chunking, last_chunk_next], ["send_chunk"], "BDAT LAST"),
    _t("rcpt_reply", RCPT, BDAT, [chunking], ["send_chunk"], "BDAT"),
    _t("rcpt_reply", RCPT, DATA, [], ["send_data"], "DATA"),
    _t("chunk_reply", BDAT, CONTENT, [positive, last_chunk_next], ["send_chunk"], "250: BDAT LAST"),
    _t("chunk_reply", BDAT, BDAT, [positive], ["send_chunk"], "250: next BDAT"),
    _t("chunk_reply", BDAT, RSET, [], ["send_rset"], "chunk refused"),
    # pipelined (RFC 2920): these replies arrive after the group went out, and are only recorded
    _recorded("mail_reply", DATA, "MAIL's reply, recorded"),
    _recorded("rcpt_reply", DATA, "a RCPT's reply, recorded"),
    _recorded("mail_reply", CONTENT, "MAIL's reply (BDAT), recorded"),
    _recorded("rcpt_reply", CONTENT, "a RCPT's reply (BDAT), recorded"),
    _recorded("chunk_reply", CONTENT, "a chunk's reply, recorded"),
    _recorded(DELIVERY_REPLY, CONTENT, "LMTP: a recipient's delivery reply, recorded"),
    # DATA's reply decides, with every RCPT's reply known.  With the next message queued its group
    # goes out behind the content and the state stays DATA: the final reply of this message is then
    # recorded, and reported, as it comes (it decides nothing: the next message is in flight whatever
    # it says), so one trigger -- the next 354 -- is all a pipelined message costs.
    *_content([start_data, recipients_accepted, pipeline_next], ["take_next_message", "send_group"], DATA,
              "354, next message queued"),
    _recorded("final_reply", DATA, "the previous message's final reply: its result", ["finish_transaction"]),
    _recorded(DELIVERY_REPLY, DATA, "LMTP: the previous message's delivery reply, recorded"),
    *_content([start_data, recipients_accepted], [], CONTENT, "354"),
    _t("data_reply", DATA, DATA_ABORT, [start_data], ["send_lone_dot"], "354, nobody accepted"),
    _t("data_reply", DATA, RSET, [], ["send_rset"], "DATA refused"),
    _t("final_reply", DATA_ABORT, RSET, [], ["send_rset"], "any"),
    # the final reply.  The rows exclude each other, and every case has one: the common ones go first
    # (a message on its own, then the BDAT window's cases).
    _t("final_reply", CONTENT, READY, [window_clear, transaction_over], ["finish_transaction"], "final"),
    # A BDAT window (PIPELINING and CHUNKING): the messages sent behind this one answer next.  One
    # refused for the order of the commands goes again after an RSET; a refusal may leave the server's
    # transaction open, so the window stops filling and ends with an RSET.
    _t("final_reply", CONTENT, None, [window_behind, resend_due], ["requeue_message", "next_in_window"],
       "final, more in flight, refused for the order: send again"),
    _t("final_reply", CONTENT, None, [window_behind, retry_deferred], ["start_retry", "send_group", "rotate_window"],
       "final, more in flight, 452 recipients left"),
    _t("final_reply", CONTENT, None, [window_behind, chunk_refused],
       ["finish_transaction", "next_in_window", "mark_rset_due"], "final, more in flight, BDAT refused"),
    _t("final_reply", CONTENT, None, [window_behind], ["finish_transaction", "next_in_window", "fill_window"],
       "final, more in flight"),
    _t("final_reply", CONTENT, RSET, [rset_due, resend_due], ["requeue_message", "send_rset"],
       "final, refused for the order: RSET, send again"),
    _t("final_reply", CONTENT, RSET, [rset_due], ["finish_transaction", "send_rset"],
       "final, after a refusal in flight: RSET"),
    _t("final_reply", CONTENT, RSET, [chunk_refused], ["send_rset"], "BDAT refused"),
    *_round("final_reply", CONTENT, [retry_deferred], "start_retry", "final, 452 recipients left"),
    _t("rset_reply", RSET, READY, [positive, window_reset], ["window_reset_done"], "250, after a refusal in flight"),
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
    _t(CONNECTION_LOST, QUIT, CLOSED, [], ["closed_cleanly"], "server closed"),
    *(_t(CONNECTION_LOST, source, FAILED, [], ["fail_disconnected"], "server closed") for source in LIVE_STATES),
    *(_t(SERVER_SHUTDOWN, source, FAILED, [], ["fail_shutdown"], "421") for source in LIVE_STATES),
    *(
        _t(PROTOCOL_ERROR, source, FAILED, [], ["fail_protocol"], "broken reply")
        for source in (*LIVE_STATES, QUIT)
    ),
    *(_t(CLOSE, source, CLOSED, [], ["closed_locally"], "close()") for source in (*LIVE_STATES, QUIT)),
    *(_t(ABANDON, source, FAILED, [], ["fail_local"], "close(reason)") for source in (*LIVE_STATES, QUIT)),
)

TRANSITIONS: tuple[TransitionSpec, ...] = tuple(replace(row, index=index) for index, row in enumerate(_ROWS))
TRIGGERS: tuple[str, ...] = tuple(dict.fromkeys(t.trigger for t in TRANSITIONS))


def edges() -> set[tuple[str, str, str]]:
    """(source, trigger, destination) of every row; an internal row loops on its source."""
    return {(t.source, t.trigger, t.dest or t.source) for t in TRANSITIONS}
