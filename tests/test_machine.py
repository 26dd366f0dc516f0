"""The runtime machine is the table: nothing more, shared by every session, holding none alive."""

from __future__ import annotations

import ast
import gc
import weakref
from pathlib import Path

import pytest

from smtp_fsm import NEED_DATA, ClientSession, MessageSent, SessionReady
from smtp_fsm._model import SessionModel
from smtp_fsm.protocol import table
from smtp_fsm.protocol.runtime import MACHINE
from smtp_fsm.testing import SessionStepper


def runtime_edges() -> set[tuple[str, str, str]]:
    return {
        (source, name, row.dest or source)
        for name, event in MACHINE.events.items()
        for source, rows in event.transitions.items()
        for row in rows
    }


def test_runtime_machine_has_exactly_the_table_rows() -> None:
    assert runtime_edges() == table.edges()
    rows = sum(len(rows) for event in MACHINE.events.values() for rows in event.transitions.values())
    assert rows == len(table.TRANSITIONS)
    assert set(MACHINE.states) == set(table.STATE_NAMES)


def test_every_action_and_condition_exists() -> None:
    for row in table.TRANSITIONS:
        for action in row.after:
            assert callable(getattr(SessionModel, action)), action
        assert all(callable(condition) for condition in row.conditions)
    # and a recorded row decides nothing: no condition, no state change; it sends nothing either (the
    # one with an action reports a pipelined message's result)
    recorded = [row for row in table.TRANSITIONS if row.recorded]
    assert recorded and all(row.dest is None and not row.conditions for row in recorded)
    assert {action for row in recorded for action in row.after} == {"finish_transaction"}


def test_rows_know_their_index_and_the_runtime_rows_carry_it() -> None:
    assert [row.index for row in table.TRANSITIONS] == list(range(len(table.TRANSITIONS)))
    for spec in table.TRANSITIONS:
        built = [row for row in MACHINE.events[spec.trigger].transitions[spec.source] if row.row == spec.index]
        assert len(built) == 1 and (built[0].dest or spec.source) == (spec.dest or spec.source)


#: What an embedder calls; nothing else is public (the model transitions drives is private).
PUBLIC = {"receive_data", "data_to_send", "next_event", "tls_established", "close", "sendmail", "send_message",
          "send_many", "noop", "rset", "quit", "state", "capabilities", "awaiting", "replies_received", "trace"}


def test_the_engine_is_small_and_holds_no_table_action() -> None:
    public = {name for name in dir(ClientSession) if not name.startswith("_")}
    assert public == PUBLIC and len(public) <= 16
    actions = {action for row in table.TRANSITIONS for action in row.after}
    conditions = {name for row in table.TRANSITIONS for name in row.condition_names}
    assert not public & (actions | conditions)
    session = ClientSession(local_hostname="client.example")
    with pytest.raises(AttributeError):
        session.lmtp = True  # type: ignore[attr-defined]  # settings are fixed at construction


def _code_readers(path: Path) -> list[str]:
    """Where a module compares a reply code or does arithmetic on one (``x.code == 250``, ``x.code // 100``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        operands: list[ast.expr] = []
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
        elif isinstance(node, ast.BinOp):
            operands = [node.left, node.right]
        if any(isinstance(o, ast.Attribute) and o.attr == "code" for o in operands):
            found.append(f"{path.name}:{node.lineno}")
    return found


def test_only_the_protocol_package_and_the_parser_judge_reply_codes() -> None:
    package = Path(__file__).resolve().parent.parent / "smtp_fsm"
    outside = [path for path in package.rglob("*.py")
               if "protocol" not in path.parts and path.name != "replies.py" and "testing" not in path.parts]
    assert len(outside) > 15
    assert [where for path in outside for where in _code_readers(path)] == []
    # the check itself finds what it looks for
    assert _code_readers(package / "protocol" / "rules.py")


@pytest.mark.parametrize("together", [False, True], ids=["split", "together"])
def test_a_pipelined_message_costs_one_trigger_and_a_chunked_one_one(together: bool) -> None:
    """Each message's 354 decides; a final reply with the next message in flight is recorded (its row
    reports the result, as soon as it is read); only the last message's final reply fires a trigger."""
    count = 5
    for keyword in ("PIPELINING", "CHUNKING"):
        session = ClientSession(local_hostname="client.example", trace=True)
        session.receive_data(b"220 mx\r\n")
        session.data_to_send()
        session.receive_data(f"250-mx\r\n250-PIPELINING\r\n250 {keyword}\r\n".encode())
        tickets = session.send_many([("a@example.org", ["b@example.org"], b"hi\r\n")] * count)
        session.data_to_send()
        group, final = ((b"250 ok\r\n250 ok\r\n354 go\r\n", b"250 queued %d\r\n") if keyword == "PIPELINING"
                        else (b"250 ok\r\n250 ok\r\n", b"250 queued %d\r\n"))
        reads = [group] + [final % k + (group if k + 1 < count else b"") for k in range(count)]
        if not together:  # the final reply and the next group's replies in reads of their own
            reads = [line + b"\r\n" for read in reads for line in read.split(b"\r\n")[:-1]]
        reported = []
        for read in reads:
            session.receive_data(read)
            session.data_to_send()
            while isinstance(event := session.next_event(), MessageSent):
                reported.append((event.ticket, event.result.reply))
            if read.startswith(b"250 queued"):
                # the result is out on the read that carried its final reply, not one read later
                last_reply = reported[-1][1]
                assert last_reply is not None and last_reply.to_bytes() == read.split(b"\r\n")[0] + b"\r\n"
        assert [ticket for ticket, _ in reported] == tickets
        assert session.trace is not None and session.state == "ready"
        fired = [table.TRANSITIONS[row] for step in session.trace[2:] for row in step.rows or ()]
        fired = [row for row in fired if not row.recorded and row.trigger not in table.WORK_TRIGGERS.values()]
        expected = count + 1 if keyword == "PIPELINING" else count
        assert len(fired) == expected, (keyword, [row.trigger for row in fired])


def test_sessions_are_not_registered_with_the_shared_machine() -> None:
    # transitions' documented pattern for many short-lived models: the machine holds none, so
    # a session costs it nothing and nothing keeps a dropped session alive.
    session = ClientSession(local_hostname="client.example")
    session.receive_data(b"220 mx\r\n")
    assert session.state == "ehlo" and MACHINE.models == []
    ref = weakref.ref(session)
    session.close()
    del session
    gc.collect()
    assert ref() is None


def test_a_session_dropped_without_close_is_released_too() -> None:
    sessions = [ClientSession(local_hostname="client.example") for _ in range(50)]
    for session in sessions[:25]:
        session.receive_data(b"220 mx\r\n250 mx\r\n")  # some mid-conversation
    refs = [weakref.ref(session) for session in sessions]
    del sessions, session
    gc.collect()
    assert all(ref() is None for ref in refs)
    assert MACHINE.models == []


def test_the_shared_machine_serves_sessions_on_several_threads() -> None:
    import threading

    failures: list[str] = []

    def converse() -> None:
        for _ in range(200):  # bounded
            step = SessionStepper(local_hostname="client.example", trace=False)
            step.session.sendmail("a@example.org", ["b@example.org"], b"hi\r\n")
            for data in (b"220 mx\r\n", b"250 mx\r\n", b"250 ok\r\n", b"250 ok\r\n", b"354 go\r\n"):
                step.feed(data)
            results = step.feed(b"250 queued\r\n").results
            if step.state != "ready" or [result.ok for result in results.values()] != [True]:
                failures.append(step.state)

    threads = [threading.Thread(target=converse) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == [] and not any(thread.is_alive() for thread in threads)


def test_every_row_into_an_end_state_hands_out_the_closed_event() -> None:
    """The life cycle's last event comes from the row that ends the session, whichever it is."""
    ending = {"closed_cleanly", "closed_locally", "fail_shutdown", "fail_disconnected", "fail_protocol", "fail_local"}
    into_end = [row for row in table.TRANSITIONS if row.dest in table.FINAL_STATES]
    assert into_end and all(set(row.after) & ending for row in into_end)
    assert not [row for row in table.TRANSITIONS if row.source in table.FINAL_STATES]


def test_lmtp_pipelined_delivery_replies_of_one_message_arrive_behind_the_next_group() -> None:
    """LMTP (RFC 2033 §4.2): the per-recipient replies to a message's data come in ``data`` when the next
    message's group went out behind it; they are recorded there, and the last reports the result."""
    session = ClientSession(local_hostname="client.example", lmtp=True)
    session.receive_data(b"220 lmtp\r\n")
    session.data_to_send()
    session.receive_data(b"250-lmtp\r\n250 PIPELINING\r\n")
    assert isinstance(session.next_event(), SessionReady)
    first, second = session.send_many([("a@example.org", ["b@example.org", "c@example.org"], b"one\r\n"),
                                       ("a@example.org", ["d@example.org"], b"two\r\n")])
    session.data_to_send()
    session.receive_data(b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n")
    assert session.data_to_send().startswith(b"one\r\n.\r\nMAIL FROM:<a@example.org>")
    assert session.state == "data"  # the second message's group is in flight behind the content
    session.receive_data(b"250 2.0.0 b delivered\r\n")
    assert session.next_event() is NEED_DATA  # one recipient's reply: recorded, nothing decided yet
    session.receive_data(b"552 5.2.2 c over quota\r\n")
    event = session.next_event()
    assert isinstance(event, MessageSent) and event.ticket == first and event.result.ok
    assert list(event.result.accepted) == ["b@example.org"]
    assert event.result.refused["c@example.org"].code == 552
    session.receive_data(b"250 ok\r\n250 ok\r\n354 go\r\n")
    session.data_to_send()
    session.receive_data(b"250 2.0.0 d delivered\r\n")
    event = session.next_event()
    assert isinstance(event, MessageSent) and event.ticket == second and event.result.ok
    assert session.state == "ready"
