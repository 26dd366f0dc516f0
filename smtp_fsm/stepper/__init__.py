"""The lecture stepper: one self-contained HTML page that replays a trace on the protocol's diagrams.

Theory of operation: the page holds the SVG of one view (or of every phase's
page, ``pages``, the default: the words are on the edges there), the steps in
words, the protocol table as JSON, and a little JavaScript (page.js) with its
stylesheet (page.css).  It loads nothing -- a Content-Security-Policy forbids
every fetch -- so it works from disk, offline, on a projector.

Each step lights the edge it took, found by the ids diagram.py gives every
node (the state's name) and edge (``source--trigger--dest``); a session-wide
rule lights its one edge from "any state".  The camera keeps the current
state and edge in the middle of the pane at a scale where the smallest text
is at least 14 px.  Explore mode stands in a state and lists the table's rows
leaving it, from the JSON; picking one moves along that edge.  Printing gives
a handout: the diagrams whole and the steps, without the controls.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from ..auth import Credentials
from ..diagram import ANY_NODE, PAGES, VIEWS, build_view, edge_id, svg_for
from ..protocol import table
from ..trace import TraceStep
from ._steps import SHOWN_LINES, StepText, row_code, row_words, step_texts
from ._table import PAGE_OF, table_records

DEFAULT_TITLE = "smtp_fsm: an SMTP session, step by step"
#: "pages": each step on the page of its phase (diagram.PAGES), where the edges carry words.
PAGES_VIEW = "pages"
STEPPER_VIEWS: tuple[str, ...] = (PAGES_VIEW, *VIEWS)
#: Below this, text on the projected page is too small to read (px at 1920x1080).
LEGIBLE_PX = 14

Key = tuple[str, str, str]


def step_edges(steps: Sequence[TraceStep]) -> list[Key | None]:
    """The (source, trigger, dest) edge each step took: the last table row it recorded.

    None for a step that recorded no row (a trace written by hand or by an older version),
    or one whose row does not fit its states (a trace from a different table).
    """
    chosen: list[Key | None] = []
    for step in steps:
        key: Key | None = None
        if step.rows and 0 <= step.rows[-1] < len(table.TRANSITIONS):
            row = table.TRANSITIONS[step.rows[-1]]
            dest = row.dest or row.source
            first = table.TRANSITIONS[step.rows[0]] if 0 <= step.rows[0] < len(table.TRANSITIONS) else row
            if dest == step.state_after and first.source == step.state_before:
                key = (row.source, row.trigger, dest)
        chosen.append(key)
    return chosen


def view_names(view: str) -> tuple[str, ...]:
    """The diagram views a stepper ``view`` shows: one, or every phase's page."""
    if view not in STEPPER_VIEWS:
        raise ValueError(f"unknown view {view!r}; choose from {', '.join(STEPPER_VIEWS)}")
    return tuple(PAGES) if view == PAGES_VIEW else (view,)


def load_svgs(view: str) -> dict[str, str]:
    """The SVG of each diagram the page shows: rendered by dot, or shipped in the package.

    Raises ``GraphvizMissing`` (one line saying what to install) when neither can be had: call it
    before a session runs, so that a missing tool costs nothing.
    """
    return {name: svg_for(name) for name in view_names(view)}


@dataclass(frozen=True)
class _Drawn:
    nodes: frozenset[str]
    edges: frozenset[Key]
    rules: frozenset[str]


def _drawn(name: str) -> _Drawn:
    spec = build_view(name)
    return _Drawn(frozenset((*spec.states, *spec.exits)), frozenset(e.key for e in spec.edges),
                  frozenset(spec.rule_triggers))


def _place(step: TraceStep, key: Key | None, names: Sequence[str], drawn: dict[str, _Drawn]) -> tuple[str, str]:
    """The view a step is shown on, and the id of its edge there ("" when that view does not draw it)."""
    # (a state this table does not have -- a trace from another version -- is shown on the first page)
    name = PAGE_OF.get(key[0] if key else step.state_before, names[0]) if len(names) > 1 else names[0]
    if key is None:
        return name, ""
    if key in drawn[name].edges:
        return name, edge_id(*key)
    if key[1] in drawn[name].rules:
        return name, edge_id(ANY_NODE, key[1], key[2])
    return name, ""


# --- the page ----------------------------------------------------------------------------

def _asset(name: str) -> str:
    return (files(__package__) / name).read_text(encoding="utf-8")


def _inline_svg(name: str, svg: str) -> str:
    """The SVG without its XML prologue, every id prefixed with its view (pages share state names)."""
    marker = svg.find("<!-- smtp-fsm-dot-sha256")
    body = svg[marker if marker >= 0 else svg.find("<svg"):]
    return body.replace(' id="', f' id="{name}/')


def _step_item(text: StepText, view: str, edge: str, undrawn: bool) -> str:
    step = text.step
    lines = "\n".join(f'<span class="{line.kind}">{html.escape(line.text)}</span>' for line in text.lines)
    folded = ""
    if text.folded:
        size = len(step.sent)
        rest = "\n".join(html.escape(line) for line in text.folded)
        folded = (f'<details><summary>{len(text.folded)} more lines ({size:,} bytes sent in this step): '
                  f'show them all</summary><pre class="C">{rest}</pre></details>')
    rows = "".join(f'<div class="row" data-row="{row.index}">{html.escape(row_words(row))}'
                   f'<code>{html.escape(row_code(row))}</code></div>' for row in text.rows)
    if not text.rows:
        rows = '<div class="row">no table row recorded for this step</div>'
    return (
        f'<li id="fsm-step-{text.number}" data-before="{html.escape(step.state_before)}" '
        f'data-after="{html.escape(step.state_after)}" data-view="{html.escape(view)}" '
        f'data-edge="{html.escape(edge)}" data-undrawn="{"1" if undrawn else ""}" '
        f'data-explain="{html.escape(text.explain)}">'
        f'<div class="states">{text.number}. {html.escape(step.state_before)} → {html.escape(step.state_after)}'
        f'</div>{rows}<pre>{lines}</pre>{folded}</li>'
    )


#: Nothing may be fetched: the page works the same offline and from disk.
_CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"


def render_stepper(steps: Sequence[TraceStep], title: str = DEFAULT_TITLE, view: str = PAGES_VIEW,
                   demo_credentials: Credentials | None = None, svgs: dict[str, str] | None = None) -> str:
    """The whole stepper page for ``steps`` (a session's ``trace``) as one HTML string.

    ``view``: a diagram view (``diagram.VIEWS``) or ``pages``.  ``demo_credentials`` are put back
    where the trace masked them: only for the demo's throw-away account.  ``svgs``: what
    ``load_svgs(view)`` returned (loaded first so a missing Graphviz is known before a session).
    """
    names = view_names(view)
    svgs = load_svgs(view) if svgs is None else svgs
    drawn = {name: _drawn(name) for name in names}
    items = []
    for text, key in zip(step_texts(steps, demo_credentials), step_edges(steps), strict=True):
        shown_on, edge = _place(text.step, key, names, drawn)
        items.append(_step_item(text, shown_on, edge, undrawn=key is not None and not edge))
    data: dict[str, Any] = {**table_records(), "views": list(names), "legible_px": LEGIBLE_PX,
                            "nodes": {name: sorted(d.nodes) for name, d in drawn.items()}}
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")
    figures = "\n".join(f'<figure class="fsm-view" data-view="{name}"{"" if i == 0 else " hidden"}>'
                        f'{_inline_svg(name, svgs[name])}</figure>' for i, name in enumerate(names))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{_asset("page.css")}</style>
</head>
<body data-mode="replay">
<header>
<h1>{html.escape(title)}</h1>
<nav class="fsm-controls" aria-label="stepper controls">
<button id="fsm-prev" type="button" title="previous step (←)">◀ previous</button>
<span id="fsm-counter">step 0 of {len(steps)}</span>
<button id="fsm-next" type="button" title="next step (→)">next ▶</button>
<button id="fsm-zoom-out" type="button" title="smaller diagram (-)">−</button>
<span id="fsm-zoom-level">auto</span>
<button id="fsm-zoom-in" type="button" title="larger diagram (+)">+</button>
<button id="fsm-explore" type="button" aria-pressed="false" title="explore: pick any reply in any state (e)">
explore</button>
</nav>
</header>
<div id="fsm-now" aria-live="polite"></div>
<main>
<div id="fsm-diagram">
{figures}
</div>
<aside id="fsm-side">
<ol id="fsm-transcript">
{chr(10).join(items)}
</ol>
<section id="fsm-explorer" hidden aria-label="explore mode"></section>
</aside>
</main>
<script type="application/json" id="fsm-data">{payload}</script>
<script>{_asset("page.js")}</script>
</body>
</html>
"""


def write_stepper(steps: Sequence[TraceStep], path: Path, title: str = DEFAULT_TITLE, view: str = PAGES_VIEW,
                  demo_credentials: Credentials | None = None, svgs: dict[str, str] | None = None) -> Path:
    """Write the stepper page to ``path`` and return it."""
    page = render_stepper(steps, title, view, demo_credentials, svgs)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8", newline="\n")
    return path


__all__ = ["DEFAULT_TITLE", "LEGIBLE_PX", "PAGES_VIEW", "SHOWN_LINES", "STEPPER_VIEWS", "load_svgs",
           "render_stepper", "step_edges", "view_names", "write_stepper"]
