"""The table as a running ``transitions`` machine, built once and shared by every session.

Only transitions' public surface is used: ``event_cls`` and ``transition_cls``
override the public ``Event.trigger`` and ``Transition.execute``, and sessions
are not registered as models (each keeps its own ``state``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from transitions import EventData, Machine, MachineError, State
from transitions.core import Event, Transition

from .table import INITIAL, STATE_NAMES, TRANSITIONS


class TableTransition(Transition):
    """A row of the table: its conditions in order, the state change, its ``after`` actions.

    transitions' own ``execute`` also runs prepare/before callbacks and machine-wide
    hooks and logs eight debug lines per row tried; the table uses none of those hooks
    (``build_machine`` checks), and that overhead was most of a trigger's 11 µs.  The
    semantics the table relies on -- rows tried in order, the first whose conditions
    all hold is taken, then its actions run -- are kept exactly.  The row taken is
    noted on the model (``row``) for its trace.
    """

    # Set by build_machine from the table's row: its index, and its conditions and actions
    # as plain tuples (read on every trigger, so no per-call look-up through transitions' wrappers).
    row = -1
    checks: tuple[Callable[[EventData], bool], ...] = ()
    actions: tuple[str, ...] = ()

    def execute(self, event_data: EventData) -> bool:
        for check in self.checks:
            if not check(event_data):
                return False
        model: Any = event_data.model
        model.row = self.row
        if self.dest is not None:
            model.state = self.dest  # the machine's model_attribute (build_machine keeps the default)
        for action in self.actions:
            getattr(model, action)(event_data)
        return True


class TableEvent(Event):
    """A trigger: looks up the rows for the model's state and takes the first that applies.

    Unlike transitions' ``Event.trigger`` it has no queue, no prepare/finalize hooks and
    no exception hook (the table uses none; ``build_machine`` checks); an unknown
    (trigger, state) pair still raises ``MachineError``.
    """

    def trigger(self, model: Any, *args: Any, **kwargs: Any) -> bool:
        name = model.state  # (the machine's model_attribute: build_machine keeps the default)
        rows = self.transitions.get(name)
        if rows is None:
            raise MachineError(f"Can't trigger event {self.name} from state {name}!")
        machine = self.machine
        event_data = EventData(machine.states[name], self, machine, model, args, kwargs)
        for row in rows:
            event_data.transition = row
            if row.execute(event_data):
                event_data.result = True
                return True
        return False


class SessionMachine(Machine):
    """A plain Machine whose rows and triggers are the table's (``transition_cls``, ``event_cls``).

    It has no models: sessions are never registered (``model=None``).  Each keeps its
    own ``state`` attribute and fires ``MACHINE.events[name].trigger(model, ...)``,
    the pattern transitions' FAQ gives for many short-lived models on one class-level
    machine.  So nothing is bound onto a session (transitions would add a method per
    trigger and per state, about 16 KiB), nothing holds it (a session dropped without
    ``close()`` is collected), and a trigger changes nothing shared: the machine is safe
    to use from many threads, each with its own sessions.
    """

    transition_cls = TableTransition
    event_cls = TableEvent


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
    # The rows of one (trigger, source) were added in table order: number them as the table does.
    for spec in TRANSITIONS:
        rows = machine.events[spec.trigger].transitions[spec.source]
        built = next(row for row in rows if isinstance(row, TableTransition) and row.row < 0)
        built.row, built.checks, built.actions = spec.index, spec.conditions, spec.after
    # The lean rows and events above skip transitions' hooks; none may be in use.
    hooks = [machine.prepare_event, machine.finalize_event, machine.before_state_change,
             machine.after_state_change, machine.on_exception, machine.on_final]
    rows = [row for event in machine.events.values() for group in event.transitions.values() for row in group]
    hooks += [row.prepare for row in rows] + [row.before for row in rows]
    hooks += [state.on_enter for state in machine.states.values()]
    hooks += [state.on_exit for state in machine.states.values()]
    plain = all(callable(c.func) and c.target is True for row in rows for c in row.conditions)
    named = all(isinstance(action, str) for row in rows for action in row.after)
    if any(hooks) or machine.has_queue or not plain or not named or machine.model_attribute != "state":
        raise RuntimeError("the protocol machine uses only callable conditions and named after-actions")
    return machine


class RecordedRow:
    """A row that only records a reply (no condition, no state change): taken without a trigger.

    Firing its trigger would only find this one row; taking it directly skips the event's look-ups,
    which matter because a pipelined message's final reply is such a row (table.py).  ``actions``
    and ``index`` are the row's, read by the session before it calls ``take``.
    """

    __slots__ = ("actions", "event", "index", "row", "state")

    def __init__(self, row: TableTransition, state: State, event: Event) -> None:
        self.row, self.state, self.event = row, state, event
        self.actions, self.index = row.actions, row.row

    def take(self, model: Any, reply: Any) -> None:
        """Note the row on the model and run its actions with the event data a trigger gives them."""
        event_data = EventData(self.state, self.event, self.event.machine, model, (reply, None), {})
        event_data.transition = self.row
        self.row.execute(event_data)


def recorded_rows(machine: SessionMachine) -> dict[str, dict[str, RecordedRow]]:
    """trigger -> {state: the row of a reply only recorded in that state}."""
    rows: dict[str, dict[str, RecordedRow]] = {}
    for spec in TRANSITIONS:
        if spec.recorded:
            event = machine.events[spec.trigger]
            built = next(row for row in event.transitions[spec.source]
                         if isinstance(row, TableTransition) and row.row == spec.index)
            rows.setdefault(spec.trigger, {})[spec.source] = RecordedRow(built, machine.states[spec.source], event)
    return rows


MACHINE = build_machine()
#: trigger -> {state: its recorded row}: the session takes these rows without firing the trigger.
RECORDED = recorded_rows(MACHINE)
