"""What the tests of examples/ share: loading an example, and a session that writes down what it handed out."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import pytest

import smtp_fsm

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

#: A server that says yes to STARTTLS, then never answers the ClientHello (it reads and ignores it).
SILENT_AFTER_STARTTLS = """\
S: 220 mx.example ESMTP
C: EHLO [127.0.0.1]
S: 250-mx.example
S: 250 STARTTLS
C: STARTTLS
S: 220 2.0.0 go ahead
"""


def load_example(name: str) -> ModuleType:
    """examples/<name>.py as a module (the examples are scripts, not a package)."""
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    return importlib.import_module(name)


class RecordingSession(smtp_fsm.ClientSession):
    """The engine as an example drives it, with every ``next_event`` outcome written down."""

    made: ClassVar[list[RecordingSession]] = []  # every one made since record_sessions()

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.options = options
        self.seen: list[object] = []  # events, NEED_DATA and raised errors, in order
        RecordingSession.made.append(self)

    def next_event(self) -> smtp_fsm.SessionEvent | smtp_fsm.NeedData:
        try:
            event = super().next_event()
        except smtp_fsm.SMTPError as exc:
            self.seen.append(exc)
            raise
        self.seen.append(event)
        return event

    def raised(self) -> list[smtp_fsm.SMTPError]:
        return [item for item in self.seen if isinstance(item, smtp_fsm.SMTPError)]

    def kinds(self) -> list[type]:
        """The types of what ``next_event`` handed out or raised, NEED_DATA left out."""
        return [type(item) for item in self.seen if item is not smtp_fsm.NEED_DATA]


def record_sessions(monkeypatch: pytest.MonkeyPatch) -> list[RecordingSession]:
    """Make ``smtp_fsm.ClientSession`` a RecordingSession for this test; the list fills as they are made."""
    RecordingSession.made = []
    monkeypatch.setattr(smtp_fsm, "ClientSession", RecordingSession)
    return RecordingSession.made
