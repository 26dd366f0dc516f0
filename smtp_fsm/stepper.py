"""The lecture stepper: one self-contained HTML page that replays a trace on the machine's diagram.

The page holds the inline SVG of the "machine" view, the transcript and a
little JavaScript; it loads nothing (a Content-Security-Policy forbids every
fetch), so it works from disk, offline, on a projector.  Each trace step is
mapped to the diagram edge it took, found by the id diagram.py gives every
edge (``source--trigger--dest``).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

from .diagram import ANY_NODE, build_view, edge_id, rule_triggers, svg_for
from .protocol import table
from .trace import TraceStep

DEFAULT_TITLE = "smtp_fsm: an SMTP session, step by step"
_MAX_LINES = 8  # transcript lines shown per step; a message body is cut after these
_MAX_LINE = 160

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


# --- the page ----------------------------------------------------------------------

def _clip(text: str) -> str:
    return text if len(text) <= _MAX_LINE else text[:_MAX_LINE - 1] + "…"


def _transcript_lines(step: TraceStep) -> list[tuple[str, str]]:
    """(kind, text) lines of one step: the reply (S:), what the client did (note), what it sent (C:)."""
    lines: list[tuple[str, str]] = []
    if step.reply is not None:
        wire = step.reply.to_bytes().decode("utf-8", "replace")
        lines.extend(("S", f"S: {_clip(line)}") for line in wire.split("\r\n") if line)
    if step.note:
        lines.append(("note", f"({step.note})"))
    sent = step.sent.decode("utf-8", "replace").split("\r\n")
    if sent and sent[-1] == "":
        sent.pop()
    for line in sent[:_MAX_LINES]:
        lines.append(("C", f"C: {_clip(line)}"))
    if len(sent) > _MAX_LINES:
        lines.append(("more", f"C: … {len(sent) - _MAX_LINES} more lines"))
    lines.extend(("event", f"→ {_clip(event)}") for event in step.events)
    return lines


def _inline_svg() -> str:
    svg = svg_for("machine")  # rendered by dot, or the one shipped in the package
    marker = svg.find("<!-- smtp-fsm-dot-sha256")
    return svg[marker if marker >= 0 else svg.find("<svg"):]


_CSS = """
* { box-sizing: border-box; }
html, body { margin: 0; height: 100%; font-family: system-ui, sans-serif; color: #0f172a; background: #fff; }
header { display: flex; align-items: center; gap: 1em; padding: .5em 1em; border-bottom: 1px solid #cbd5e1; }
header h1 { font-size: 1.1em; margin: 0; flex: 1; }
button { font: inherit; padding: .25em .8em; cursor: pointer; }
#fsm-counter { font-variant-numeric: tabular-nums; min-width: 7em; text-align: center; }
#fsm-now { padding: .4em 1em; background: #fef3c7; border-bottom: 1px solid #f59e0b; min-height: 2.2em; }
main { display: grid; grid-template-columns: 62% 38%; height: calc(100% - 6em); }
#fsm-diagram { overflow: auto; border-right: 1px solid #cbd5e1; padding: .5em; }
#fsm-diagram svg { height: auto; }
#fsm-zoom-level { min-width: 3.5em; text-align: center; font-variant-numeric: tabular-nums; }
#fsm-transcript { overflow: auto; margin: 0; padding: .5em 1em .5em 2.5em; }
#fsm-transcript li { margin: .3em 0; padding: .3em .5em; border-left: 4px solid transparent; cursor: pointer; }
#fsm-transcript li.fsm-current { background: #fef3c7; border-left-color: #d97706; }
#fsm-transcript .states { font-size: .85em; color: #475569; }
#fsm-transcript pre { margin: .2em 0 0; white-space: pre-wrap; word-break: break-all; font-size: .85em; }
#fsm-transcript .S { color: #1d4ed8; }
#fsm-transcript .C { color: #047857; }
#fsm-transcript .note, #fsm-transcript .more, #fsm-transcript .event { color: #64748b; font-style: italic; }
#fsm-diagram g.node.fsm-active > path, #fsm-diagram g.node.fsm-active > polygon,
#fsm-diagram g.node.fsm-active > ellipse { fill: #fde68a; stroke: #b45309; stroke-width: 4px; }
#fsm-diagram g.node.fsm-from > path, #fsm-diagram g.node.fsm-from > polygon { stroke: #d97706; stroke-width: 2px; }
#fsm-diagram g.edge.fsm-taken > path { stroke: #d97706; stroke-width: 4px; stroke-dasharray: none; }
#fsm-diagram g.edge.fsm-taken > polygon { fill: #d97706; stroke: #d97706; }
#fsm-diagram g.edge.fsm-taken > text { fill: #92400e; font-weight: bold; }
"""

_JS = """
(function () {
  "use strict";
  var items = Array.prototype.slice.call(document.querySelectorAll("#fsm-transcript li"));
  var diagram = document.getElementById("fsm-diagram");
  var counter = document.getElementById("fsm-counter");
  var now = document.getElementById("fsm-now");
  var current = -1;
  var svg = diagram.querySelector("svg");
  var levels = [0, 0.4, 0.6, 0.8, 1, 1.5];  // 0: fit the pane's width
  var zoom = 2;
  var natural = svg && svg.viewBox && svg.viewBox.baseVal ? svg.viewBox.baseVal.width * 4 / 3 : 0;
  function setZoom(level) {
    zoom = Math.max(0, Math.min(levels.length - 1, level));
    if (svg) { svg.style.width = levels[zoom] ? Math.round(natural * levels[zoom]) + "px" : "100%"; }
    document.getElementById("fsm-zoom-level").textContent = levels[zoom] ? Math.round(levels[zoom] * 100) + "%" : "fit";
    if (current >= 0) { show(current); }
  }
  function mark(id, cls) {
    var el = id ? document.getElementById(id) : null;
    if (el && diagram.contains(el)) { el.classList.add(cls); }
    return el;
  }
  function clear(cls) {
    Array.prototype.forEach.call(diagram.querySelectorAll("." + cls), function (el) { el.classList.remove(cls); });
  }
  function show(index) {
    if (items.length === 0) { counter.textContent = "no steps"; return; }
    index = Math.max(0, Math.min(items.length - 1, index));
    if (current >= 0) { items[current].classList.remove("fsm-current"); }
    current = index;
    var item = items[index];
    item.classList.add("fsm-current");
    clear("fsm-active"); clear("fsm-from"); clear("fsm-taken");
    if (item.dataset.before !== item.dataset.after) { mark(item.dataset.before, "fsm-from"); }
    var node = mark(item.dataset.after, "fsm-active");
    mark(item.dataset.edge, "fsm-taken");
    document.body.dataset.state = item.dataset.after;
    document.body.dataset.step = String(index + 1);
    counter.textContent = "step " + (index + 1) + " of " + items.length;
    now.textContent = item.dataset.explain;
    document.getElementById("fsm-prev").disabled = index === 0;
    document.getElementById("fsm-next").disabled = index === items.length - 1;
    item.scrollIntoView({block: "nearest"});
    if (node && levels[zoom]) { node.scrollIntoView({block: "center", inline: "center"}); }
  }
  document.getElementById("fsm-prev").addEventListener("click", function () { show(current - 1); });
  document.getElementById("fsm-next").addEventListener("click", function () { show(current + 1); });
  document.getElementById("fsm-zoom-out").addEventListener("click", function () { setZoom(zoom - 1); });
  document.getElementById("fsm-zoom-in").addEventListener("click", function () { setZoom(zoom + 1); });
  items.forEach(function (item, index) { item.addEventListener("click", function () { show(index); }); });
  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey) { return; }
    var keys = {ArrowRight: 1, PageDown: 1, " ": 1, ArrowLeft: -1, PageUp: -1};
    if (event.key in keys) { show(current + keys[event.key]); }
    else if (event.key === "Home") { show(0); }
    else if (event.key === "End") { show(items.length - 1); }
    else if (event.key === "+" || event.key === "=") { setZoom(zoom + 1); }
    else if (event.key === "-") { setZoom(zoom - 1); }
    else { return; }
    event.preventDefault();
  });
  setZoom(zoom);
  show(0);
}());
"""

#: Nothing may be fetched: the page works the same offline and from disk.
_CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"


def _explain(step: TraceStep, key: Key | None) -> str:
    specs = {s.name: s for s in table.STATES}
    state = specs.get(step.state_after)
    text = f"{step.state_after}: {state.description} ({state.rfc})" if state else step.state_after
    if key is not None:
        labels = [r.label for r in table.TRANSITIONS if (r.source, r.trigger, r.dest or r.source) == key]
        text = f"{key[0]} → {key[2]} by {key[1]} ({' / '.join(dict.fromkeys(labels))}). Now {text}"
    return text


def render_stepper(steps: Sequence[TraceStep], title: str = DEFAULT_TITLE) -> str:
    """The whole stepper page for ``steps`` (a session's ``trace``) as one HTML string."""
    known = {e.key for e in build_view("machine").edges}  # (a session-wide rule is drawn from "any state")
    rules = set(rule_triggers())
    items = []
    for number, (step, key) in enumerate(zip(steps, step_edges(steps), strict=True), start=1):
        lines = "\n".join(f'<span class="{kind}">{html.escape(text)}</span>'
                          for kind, text in _transcript_lines(step))
        edge = ""
        if key is not None and key in known:
            edge = edge_id(*key)
        elif key is not None and key[1] in rules:
            edge = edge_id(ANY_NODE, key[1], key[2])
        via = f" ({key[1]})" if key else ""
        items.append(
            f'<li id="fsm-step-{number}" data-before="{html.escape(step.state_before)}" '
            f'data-after="{html.escape(step.state_after)}" data-edge="{html.escape(edge)}" '
            f'data-explain="{html.escape(_explain(step, key))}">'
            f'<div class="states">{html.escape(step.state_before)} → {html.escape(step.state_after)}'
            f'{html.escape(via)}</div><pre>{lines}</pre></li>'
        )
    body = "\n".join(items)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<header>
<h1>{html.escape(title)}</h1>
<button id="fsm-prev" type="button" title="previous step (←)">◀ previous</button>
<span id="fsm-counter">step 0 of {len(steps)}</span>
<button id="fsm-next" type="button" title="next step (→)">next ▶</button>
<button id="fsm-zoom-out" type="button" title="smaller diagram (-)">−</button>
<span id="fsm-zoom-level">fit</span>
<button id="fsm-zoom-in" type="button" title="larger diagram (+)">+</button>
</header>
<div id="fsm-now"></div>
<main>
<div id="fsm-diagram">
{_inline_svg()}
</div>
<ol id="fsm-transcript">
{body}
</ol>
</main>
<script>{_JS}</script>
</body>
</html>
"""


def write_stepper(steps: Sequence[TraceStep], path: Path, title: str = DEFAULT_TITLE) -> Path:
    """Write the stepper page to ``path`` and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_stepper(steps, title), encoding="utf-8", newline="\n")
    return path
