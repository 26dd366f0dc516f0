"""The protocol table as the stepper page's explore mode reads it: exported as JSON, never rewritten.

The page's JavaScript lists a state's rows, in table order, from exactly these
records; it holds no protocol of its own (tests/test_stepper.py checks the
page's rows against ``table.TRANSITIONS``).
"""

from __future__ import annotations

from typing import Any

from ..diagram import PAGES, protocol_text, rule_triggers
from ..protocol import table

#: The page each state is drawn on in full (``diagram.PAGES``).
PAGE_OF: dict[str, str] = {state: page for page, states in PAGES.items() for state in states}


def _doc(function: Any) -> str:
    """A condition in words: the first paragraph of its docstring, on one line."""
    text = (function.__doc__ or "").strip().split("\n\n")[0]
    return " ".join(text.split())


def row_record(row: table.TransitionSpec) -> dict[str, Any]:
    return {
        "index": row.index,
        "trigger": row.trigger,
        "source": row.source,
        "dest": row.dest or row.source,
        "internal": row.dest is None,
        "recorded": row.recorded,
        "label": row.label,
        "words": protocol_text(row),
        "conditions": [{"name": cond.__name__, "words": _doc(cond)} for cond in row.conditions],
        "after": list(row.after),
    }


def table_records() -> dict[str, Any]:
    """The states, the rows and the session-wide rules, for the page's explore mode."""
    return {
        "states": [{"name": s.name, "description": s.description, "rfc": s.rfc, "page": PAGE_OF[s.name]}
                   for s in table.STATES],
        "rows": [row_record(row) for row in table.TRANSITIONS],
        "rules": {trigger: words for trigger, words in table.SESSION_RULES if trigger in rule_triggers()},
        "initial": table.INITIAL,
    }
