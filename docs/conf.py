"""Sphinx configuration: the reference is built from the code, the protocol pages from the table.

Before each build, ``_generated/`` is written from ``smtp_fsm.protocol.table`` (the states with
their RFC sections, every transition in words, the session-wide rules) and from the command
line's exit codes, so these pages cannot disagree with what runs.  ``make docs`` builds the
HTML with warnings as errors and runs every example (``sphinx.ext.doctest``) against a real
local server.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import smtp_fsm  # noqa: E402  (after the path: the checkout, not an older installed copy)
from smtp_fsm.cli import EXIT_CODES_HELP  # noqa: E402
from smtp_fsm.protocol import table  # noqa: E402

project = "smtp_fsm"
author = "the smtp_fsm team"
release = version = smtp_fsm.__version__
# No intersphinx: the build must not need the network.
extensions = ["sphinx.ext.autodoc", "sphinx.ext.doctest", "sphinx.ext.viewcode"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": True}
html_theme = "alabaster"
html_static_path: list[str] = []
exclude_patterns = ["_build", "_generated/*.part.rst"]

# Every doctest block runs with a real aiosmtpd server on 127.0.0.1 at hand (``server``).
doctest_global_setup = """
import smtp_fsm
from smtp_fsm.testing import LocalSMTPServer, SessionStepper, parse_transcript, replay
server = LocalSMTPServer(pipelining=True).start()
"""
doctest_global_cleanup = "server.stop()"


def _rst_table(header: list[str], rows: list[list[str]]) -> str:
    """A list-table (cells may hold inline markup)."""
    out = [".. list-table::", "   :header-rows: 1", ""]
    for row in [header, *rows]:
        out.append(f"   * - {row[0]}")
        out.extend(f"     - {cell}" for cell in row[1:])
    return "\n".join(out) + "\n"


def _protocol_page() -> str:
    states = _rst_table(["state", "phase", "waiting for", "RFC"],
                        [[f"``{s.name}``", s.phase, s.description, s.rfc] for s in table.STATES])
    rows = []
    for row in table.TRANSITIONS:
        when = row.label or "(always)"
        checks = ", ".join(f"``{name}``" for name in row.condition_names) or "--"
        doing = ", ".join(f"``{name}``" for name in row.after) or ("noted on its message" if row.recorded else "--")
        dest = f"``{row.dest}``" if row.dest else "(stays)"
        rows.append([str(row.index), f"``{row.source}``", f"``{row.trigger}``", when, checks, dest, doing])
    transitions = _rst_table(["#", "from", "trigger", "when", "conditions", "to", "then"], rows)
    rules = "\n".join(f"``{trigger}``\n   {text}\n" for trigger, text in table.SESSION_RULES)
    return (f"The states\n----------\n\n{states}\n"
            f"Rules in every state\n--------------------\n\n{rules}\n"
            f"Every transition\n----------------\n\n"
            f"The rows in table order; a trace names the row it took by its number.\n\n{transitions}")


def _exit_codes_page() -> str:
    body = EXIT_CODES_HELP.split("\n", 1)[1]
    return "::\n\n" + "\n".join(f"   {line}" for line in body.splitlines()) + "\n"


def _generate(app: object) -> None:
    out = Path(__file__).parent / "_generated"
    out.mkdir(exist_ok=True)
    for name, text in (("protocol.rst", _protocol_page()), ("exit_codes.rst", _exit_codes_page())):
        path = out / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:  # unchanged: no rebuild
            path.write_text(text, encoding="utf-8")
    diagrams = Path(__file__).parent / "_diagrams"
    diagrams.mkdir(exist_ok=True)
    for svg in (ROOT / "diagrams").glob("*.svg"):
        target = diagrams / svg.name
        if not target.exists() or target.read_bytes() != svg.read_bytes():
            target.write_bytes(svg.read_bytes())


def setup(app: object) -> None:
    app.connect("builder-inited", _generate)  # type: ignore[attr-defined]
