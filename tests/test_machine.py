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


def test_sessions_are_models_of_one_machine_and_are_released() -> None:
    session = ClientSession()
    assert session in table.MACHINE.models
    ref = weakref.ref(session)
    session.close()
    assert session not in table.MACHINE.models
    del session
    gc.collect()
    assert ref() is None


def test_a_session_dropped_without_close_is_released_too() -> None:
    before = len(table.MACHINE.models)
    sessions = [ClientSession() for _ in range(50)]
    assert len(table.MACHINE.models) == before + 50
    refs = [weakref.ref(session) for session in sessions]
    del sessions
    gc.collect()
    assert all(ref() is None for ref in refs)
    assert len(table.MACHINE.models) == before
