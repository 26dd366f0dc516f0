"""The runtime machine is the table: nothing more, shared by every session, holding none alive."""

from __future__ import annotations

import gc
import weakref

from smtp_fsm import ClientSession
from smtp_fsm import machine as table


def runtime_edges() -> set[tuple[str, str, str]]:
    return {
        (source, name, row.dest or source)
        for name, event in table.MACHINE.events.items()
        for source, rows in event.transitions.items()
        for row in rows
    }


def test_runtime_machine_has_exactly_the_table_rows() -> None:
    assert runtime_edges() == table.edges()
    rows = sum(len(rows) for event in table.MACHINE.events.values() for rows in event.transitions.values())
    assert rows == len(table.TRANSITIONS)
    assert set(table.MACHINE.states) == set(table.STATE_NAMES)


def test_every_action_and_condition_exists() -> None:
    session = ClientSession()
    for row in table.TRANSITIONS:
        for action in row.after:
            assert callable(getattr(session, action)), action
        assert all(callable(condition) for condition in row.conditions)
    session.close()


def test_sessions_are_not_registered_with_the_shared_machine() -> None:
    # transitions' documented pattern for many short-lived models: the machine holds none, so
    # a session costs it nothing and nothing keeps a dropped session alive.
    session = ClientSession()
    session.receive_data(b"220 mx\r\n")
    assert session.state == "ehlo" and table.MACHINE.models == []
    ref = weakref.ref(session)
    session.close()
    del session
    gc.collect()
    assert ref() is None


def test_a_session_dropped_without_close_is_released_too() -> None:
    sessions = [ClientSession() for _ in range(50)]
    for session in sessions[:25]:
        session.receive_data(b"220 mx\r\n250 mx\r\n")  # some mid-conversation
    refs = [weakref.ref(session) for session in sessions]
    del sessions, session
    gc.collect()
    assert all(ref() is None for ref in refs)
    assert table.MACHINE.models == []


def test_the_shared_machine_serves_sessions_on_several_threads() -> None:
    import threading

    failures: list[str] = []

    def converse() -> None:
        for _ in range(200):  # bounded
            session = ClientSession(local_hostname="client.example")
            session.sendmail("a@example.org", ["b@example.org"], b"hi\r\n")
            for data in (b"220 mx\r\n", b"250 mx\r\n", b"250 ok\r\n", b"250 ok\r\n", b"354 go\r\n"):
                session.receive_data(data)
                session.data_to_send()
            session.receive_data(b"250 queued\r\n")
            event = session.next_event()
            while type(event).__name__ != "MessageSent":
                event = session.next_event()
            if session.state != "ready" or not event.result.ok:  # type: ignore[attr-defined]
                failures.append(session.state)

    threads = [threading.Thread(target=converse) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == [] and not any(thread.is_alive() for thread in threads)
