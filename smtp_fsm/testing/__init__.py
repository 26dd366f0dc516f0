"""Tools for testing code that sends mail, and for teaching SMTP by example."""

from __future__ import annotations

from ..console import annotated_text
from ..trace import MASK, TranscriptError, dump_jsonl, load_jsonl
from ..transcript import Transcript, load_transcript, parse_transcript, to_text
from . import hostile
from .replay import ReplayMismatch, ReplayResult, SessionStepper, Stepped, replay
from .scripted import ScriptedSMTPServer
from .servers import LocalSMTPServer, ReceivedMessage, RecordingHandler, free_port, local_smtp_server

__all__ = [
    "MASK",
    "LocalSMTPServer",
    "ReceivedMessage",
    "RecordingHandler",
    "ReplayMismatch",
    "ReplayResult",
    "ScriptedSMTPServer",
    "SessionStepper",
    "Stepped",
    "Transcript",
    "TranscriptError",
    "annotated_text",
    "dump_jsonl",
    "free_port",
    "hostile",
    "load_jsonl",
    "load_transcript",
    "local_smtp_server",
    "parse_transcript",
    "replay",
    "to_text",
]
