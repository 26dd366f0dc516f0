"""DOT, Mermaid and SVG pictures of the protocol table (protocol/table.py), drawn from the table alone.

Nothing here runs a session: the pictures read ``STATES`` and ``TRANSITIONS``
directly, so the picture is the machine.  Rows that share (source, trigger,
destination) become one edge whose label lists each row's reply or request
and its condition names; the edge's id is ``source--trigger--dest`` and each
node's id is the state's name, so the SVG can be driven by the stepper.

Output is deterministic: everything follows table order (never set or hash
order), so generating twice gives byte-identical DOT and Mermaid.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ._extras import require
from .protocol import table

VIEWS: tuple[str, ...] = ("machine", "setup", "transaction", "lab")
FORMATS: tuple[str, ...] = ("dot", "mmd", "svg")
#: How edges are labelled: in the protocol's words ("250 to EHLO, STARTTLS offered", the default)
#: or as the table is written (trigger, row label, [condition names]) for people reading the code.
LABEL_STYLES: tuple[str, ...] = ("protocol", "code")
SVG_HINT = "install Graphviz (apt-get install graphviz) for SVG"
START_NODE = "__start__"
#: Stands for "any state of this view" in the partial views, where the three
#: session-wide rules (421, a close, a broken reply) are drawn once.
ANY_NODE = "__any__"

_HASH_RE = re.compile(r"<!-- smtp-fsm-dot-sha256: ([0-9a-f]{64}) -->")

#: The classic teaching lab's session, as the edges it takes (RFC 5321 §D.1
#: style, plus AUTH LOGIN): one entry per step, in order.
LAB_STEPS: tuple[tuple[str, str, str, str], ...] = (
    (table.GREETING, "greeting_reply", table.EHLO, "220 greeting; EHLO sent"),
    (table.EHLO, "ehlo_reply", table.AUTH, "250 capabilities; AUTH LOGIN sent"),
    (table.AUTH, "auth_reply", table.AUTH_RESPONSE, "334 Username:; user sent"),
    (table.AUTH_RESPONSE, "auth_reply", table.AUTH_RESPONSE, "334 Password:; password sent"),
    (table.AUTH_RESPONSE, "auth_reply", table.READY, "235 authenticated"),
    (table.READY, "begin_mail", table.MAIL, "MAIL FROM sent"),
    (table.MAIL, "mail_reply", table.RCPT, "250 to MAIL; RCPT TO sent"),
    (table.RCPT, "rcpt_reply", table.DATA, "250 to RCPT; DATA sent"),
    (table.DATA, "data_reply", table.CONTENT, "354; content and '.' sent"),
    (table.CONTENT, "final_reply", table.READY, "250 queued"),
    (table.READY, "begin_quit", table.QUIT, "QUIT sent"),
    (table.QUIT, "quit_reply", table.CLOSED, "221 bye"),
)
LAB_CAPTION = (
    "The classic teaching lab: greeting, EHLO, AUTH LOGIN (user, password), MAIL FROM, RCPT TO, DATA, QUIT. "
    "The original lab sent HELO and then AUTH LOGIN, which RFC 4954 does not allow (AUTH needs EHLO); "
    "its server tolerated it."
)

_TITLES = {
    "machine": "smtp_fsm: the whole client state machine",
    "setup": "smtp_fsm: session setup (greeting, EHLO/HELO, STARTTLS, AUTH)",
    "transaction": "smtp_fsm: the mail transaction (MAIL, RCPT, DATA/BDAT, RSET)",
    "lab": "smtp_fsm: the classic teaching lab's path",
}

_FONT = "Helvetica"
_LAB_COLOR = "#d97706"
_LAB_FILL = "#fef3c7"
_RULE_COLOR = "#94a3b8"


class GraphvizMissing(RuntimeError):
    """Graphviz's ``dot`` program is not installed, so no SVG can be rendered."""


@dataclass(frozen=True)
class Edge:
    """One drawn edge: every table row with this (source, trigger, dest), in table order."""

    source: str
    trigger: str
    dest: str
    rows: tuple[table.TransitionSpec, ...]

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.source, self.trigger, self.dest)

    @property
    def recorded(self) -> bool:
        """Its replies are only recorded (pipelined): drawn dashed."""
        return all(row.recorded for row in self.rows)


@dataclass(frozen=True)
class View:
    name: str
    states: tuple[str, ...]  # drawn as states, in table order
    exits: tuple[str, ...]  # drawn as exits (partial views only)
    edges: tuple[Edge, ...]
    rule_triggers: tuple[str, ...]  # session-wide rules drawn once from ANY_NODE (partial views)


def edge_id(source: str, trigger: str, dest: str) -> str:
    """The id an edge carries in DOT and SVG."""
    return f"{source}--{trigger}--{dest}"


def table_edges() -> tuple[Edge, ...]:
    """Every (source, trigger, dest) of the table, merged, in table order."""
    grouped: dict[tuple[str, str, str], list[table.TransitionSpec]] = {}
    for row in table.TRANSITIONS:
        grouped.setdefault((row.source, row.trigger, row.dest or row.source), []).append(row)
    return tuple(Edge(s, t, d, tuple(rows)) for (s, t, d), rows in grouped.items())


def rule_triggers() -> tuple[str, ...]:
    """Triggers that leave every live state: the session-wide rules (421, a close, a broken reply)."""
    live = set(table.LIVE_STATES)
    sources: dict[str, set[str]] = {}
    for row in table.TRANSITIONS:
        sources.setdefault(row.trigger, set()).add(row.source)
    return tuple(trigger for trigger in table.TRIGGERS if live <= sources[trigger])


def _rule_rows(trigger: str) -> tuple[tuple[table.TransitionSpec, ...], str]:
    """A session-wide rule's rows from the live states, and where they lead."""
    rows = tuple(r for r in table.TRANSITIONS if r.trigger == trigger and r.source in table.LIVE_STATES)
    return rows, rows[0].dest or rows[0].source


def _exits() -> tuple[str, ...]:
    return tuple(name for name in table.STATE_NAMES if name == table.QUIT or name in table.FINAL_STATES)


def _reach(starts: Iterable[str], stop: set[str], rules: tuple[str, ...]) -> list[str]:
    """States reachable from ``starts`` without passing through ``stop`` or following a rule."""
    seen: list[str] = []
    todo = list(starts)
    while todo:
        state = todo.pop(0)
        if state in seen:
            continue
        seen.append(state)
        if state in stop:
            continue
        todo.extend(e.dest for e in table_edges() if e.source == state and e.trigger not in rules)
    return seen


def build_view(name: str) -> View:
    """The states and edges a view draws; partial views are found by walking the table."""
    if name not in VIEWS:
        raise ValueError(f"unknown view {name!r}; choose from {', '.join(VIEWS)}")
    edges = table_edges()
    if name in ("machine", "lab"):
        return View(name, table.STATE_NAMES, (), edges, ())
    rules = rule_triggers()
    exits = _exits()
    stop = {table.READY, *exits}
    if name == "setup":
        # everything between the connection and READY
        reached = _reach([table.INITIAL], stop, rules)
        expanded = {s for s in reached if s not in stop}
    else:
        # what the caller's "send a message" starts, until the session is READY again
        mail = table.WORK_TRIGGERS["mail"]
        starts = [e.dest for e in edges if e.source == table.READY and e.trigger == mail]
        reached = [table.READY, *_reach(starts, stop, rules)]
        expanded = {s for s in reached if s not in exits}
    core = tuple(s for s in table.STATE_NAMES if s in reached and s not in exits)
    rule_dests = {_rule_rows(trigger)[1] for trigger in rules}
    view_exits = tuple(s for s in exits if s in reached or s in rule_dests)
    drawn = set(core) | set(view_exits)
    chosen = tuple(e for e in edges if e.source in expanded and e.dest in drawn and e.trigger not in rules)
    return View(name, core, view_exits, chosen, rules)


# --- DOT -------------------------------------------------------------------------

def _q(text: str) -> str:
    """A DOT double-quoted string; newlines become DOT's centred line breaks."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _attrs(**attrs: str | float) -> str:
    return "[" + ", ".join(f"{key}={_q(str(value))}" for key, value in attrs.items()) + "]"


def _state_label(spec: table.StateSpec) -> str:
    return "\n".join([spec.name, *textwrap.wrap(spec.description, 34), spec.rfc])


def _row_text(row: table.TransitionSpec) -> str:
    text = row.label or "(always)"
    if row.recorded:
        return text
    names = row.condition_names
    return f"{text}\n[{', '.join(names)}]" if names else text


# A row label that starts with the reply it takes: codes ("250", "500/501/502", "535/534/538/454..."),
# possibly "or other"/"or any", or a word for "any reply" ("other", "any", "final").
_REPLY_HEAD = re.compile(r"(\d{3} malformed|\d{3}(?:/\d{3})*(?:\.\.\.)?(?: or (?:other|any))?|other|any|final)"
                         r"(?=$|[,:] )")


def protocol_text(row: table.TransitionSpec) -> str:
    """A row in the protocol's words, made from the table alone: the reply and the command it answers
    ("250 to EHLO, STARTTLS offered", "354 to DATA"), or the event ("the caller sends: MAIL FROM")."""
    if row.trigger in table.EVENT_WORDS:
        return table.EVENT_WORDS[row.trigger].format(label=row.label)
    answered = table.REPLY_TO[row.trigger]
    if row.recorded:
        return f"reply to {answered}, noted on its message"
    head = _REPLY_HEAD.match(row.label)
    if head is None:
        return f"reply to {answered}: {row.label}" if row.label else f"reply to {answered}"
    code, rest = head.group(1), row.label[head.end():]
    kind = " reply" if not code[:1].isdigit() or code.endswith(("other", "any")) else ""
    return f"{code}{kind} to {answered}{rest}"


def _edge_label(edge: Edge, lab_steps: Sequence[int] = (), labels: str = "protocol") -> str:
    if labels == "code":
        head = edge.trigger
        if lab_steps:
            head = f"lab {', '.join(str(n) for n in lab_steps)}: {head}"
        return "\n".join([head, *(_row_text(row) for row in edge.rows)])
    lines = list(dict.fromkeys(protocol_text(row) for row in edge.rows))
    if lab_steps:
        lines[0] = f"lab {', '.join(str(n) for n in lab_steps)}: {lines[0]}"
    return "\n".join(lines)


def _check_labels(labels: str) -> None:
    if labels not in LABEL_STYLES:
        raise ValueError(f"unknown label style {labels!r}; choose from {', '.join(LABEL_STYLES)}")


def _rules_caption(triggers: Sequence[str]) -> str:
    """One sentence for the session-wide rules, grouped by where they lead."""
    by_dest: dict[str, list[str]] = {}
    for trigger in triggers:
        by_dest.setdefault(_rule_rows(trigger)[1], []).append(trigger)
    parts = [f"{', '.join(names)} lead{'s' if len(names) == 1 else ''} to {dest}" for dest, names in by_dest.items()]
    return f"From every state drawn here, {'; '.join(parts)}."


def _lab_numbers() -> dict[tuple[str, str, str], list[int]]:
    numbers: dict[tuple[str, str, str], list[int]] = {}
    for index, (source, trigger, dest, _caption) in enumerate(LAB_STEPS, start=1):
        numbers.setdefault((source, trigger, dest), []).append(index)
    return numbers


def to_dot(view: str = "machine", labels: str = "protocol") -> str:
    """The DOT source of a view (see ``VIEWS``), its edges labelled in ``labels`` style (``LABEL_STYLES``)."""
    _check_labels(labels)
    spec = build_view(view)
    specs = {s.name: s for s in table.STATES}
    lab = _lab_numbers() if view == "lab" else {}
    lab_states = {s for key in lab for s in (key[0], key[2])}
    caption = _TITLES[view]
    if view == "lab":
        caption += "\n" + "\n".join(textwrap.wrap(LAB_CAPTION, 90))
    if spec.rule_triggers:
        caption += "\n" + _rules_caption(spec.rule_triggers)
    out = [
        f"// {_TITLES[view]}",
        "// Generated from smtp_fsm/protocol/table.py by smtp_fsm.diagram (make diagrams); do not edit.",
        "digraph smtp_fsm {",
        "  " + "graph " + _attrs(id=f"view-{view}", label=caption, labelloc="t", fontname=_FONT, fontsize=14,
                                 rankdir="TB", nodesep=0.4, ranksep=0.5),
        "  " + "node " + _attrs(shape="box", style="rounded,filled", fillcolor="#f8fafc", color="#334155",
                                fontname=_FONT, fontsize=10),
        "  " + "edge " + _attrs(color="#334155", fontname=_FONT, fontsize=9),
    ]
    if table.INITIAL in spec.states:
        out.append(f"  {_q(START_NODE)} " + _attrs(id=START_NODE, shape="point", width=0.15, label=""))
    for name in spec.states:
        attrs: dict[str, str | float] = {"id": name, "label": _state_label(specs[name])}
        if name in table.FINAL_STATES:
            attrs["peripheries"] = 2
        if name in lab_states:
            attrs.update(fillcolor=_LAB_FILL, color=_LAB_COLOR, penwidth=2)
        out.append(f"  {_q(name)} " + _attrs(**attrs))
    for name in spec.exits:
        out.append(f"  {_q(name)} " + _attrs(id=name, label=_state_label(specs[name]), style="rounded,dashed",
                                               peripheries=2 if name in table.FINAL_STATES else 1))
    if spec.rule_triggers:
        out.append(f"  {_q(ANY_NODE)} " + _attrs(id=ANY_NODE, label="any state above", shape="note",
                                                  style="dashed", color=_RULE_COLOR, fontcolor="#475569"))
    if table.INITIAL in spec.states:
        out.append(f"  {_q(START_NODE)} -> {_q(table.INITIAL)} " + _attrs(id=START_NODE))
    rules = rule_triggers()
    for edge in spec.edges:
        attrs = {"id": edge_id(*edge.key), "label": _edge_label(edge, lab.get(edge.key, ()), labels)}
        if edge.trigger in rules:
            # the session-wide rules: drawn quietly, into a failed state kept at the bottom
            attrs.update(color=_RULE_COLOR, fontcolor="#64748b", style="dashed", fontsize=7)
        elif edge.recorded:
            # a pipelined reply that is only noted on its message: no state change, no action
            attrs.update(style="dashed", color="#64748b", fontcolor="#475569")
        if edge.key in lab:
            attrs.update(color=_LAB_COLOR, fontcolor="#92400e", penwidth=3)
        out.append(f"  {_q(edge.source)} -> {_q(edge.dest)} " + _attrs(**attrs))
    for trigger in spec.rule_triggers:
        rows, dest = _rule_rows(trigger)
        label = "\n".join([trigger, *dict.fromkeys(_row_text(r) for r in rows)]) if labels == "code" else (
            "\n".join(dict.fromkeys(protocol_text(r) for r in rows)))
        out.append(f"  {_q(ANY_NODE)} -> {_q(dest)} " + _attrs(id=edge_id(ANY_NODE, trigger, dest), label=label,
                                                                color=_RULE_COLOR, style="dashed"))
    if table.FAILED in spec.states:
        out.append(f"  {{rank=sink; {_q(table.FAILED)}}}")
    out.append("}")
    return "\n".join(out) + "\n"


# --- Mermaid -------------------------------------------------------------------------

def _mm_text(text: str) -> str:
    """Mermaid state-diagram labels end at ':' or ';' and '#' or '%%' start comments: keep them out."""
    text = text.replace(": ", " - ").replace(";", ",").replace(":", " ").replace("#", "no.").replace("%", " percent")
    return text.replace('"', "'").replace("\n", "<br>")


def _mm_id(name: str) -> str:
    # "default" is a Mermaid keyword; anything else the table uses is a plain identifier
    if name == ANY_NODE:
        return "any_state"
    return f"st_{name}" if name.lower().startswith("default") or name.startswith("_") else name


def to_mermaid(view: str = "machine", labels: str = "protocol") -> str:
    """The Mermaid ``stateDiagram-v2`` source of a view, its edges labelled in ``labels`` style."""
    _check_labels(labels)
    spec = build_view(view)
    specs = {s.name: s for s in table.STATES}
    lab = _lab_numbers() if view == "lab" else {}
    out = [
        "---",
        f"title: {_TITLES[view].replace(':', ' -')}",
        "---",
        "stateDiagram-v2",
        "    %% Generated from smtp_fsm/protocol/table.py by smtp_fsm.diagram (make diagrams), do not edit.",
    ]
    for name in (*spec.states, *spec.exits):
        state = specs[name]
        out.append(f'    state "{_mm_text(_state_label(state))}" as {_mm_id(name)}')
    if spec.rule_triggers:
        out.append(f'    state "any state above" as {_mm_id(ANY_NODE)}')
    if table.INITIAL in spec.states:
        out.append(f"    [*] --> {_mm_id(table.INITIAL)}")
    for edge in spec.edges:
        label = _mm_text(_edge_label(edge, lab.get(edge.key, ()), labels).replace("\n[", " ["))
        mark = "(recorded) " if edge.recorded else ""
        out.append(f"    {_mm_id(edge.source)} --> {_mm_id(edge.dest)} : {mark}{label}")
    for trigger in spec.rule_triggers:
        rows, dest = _rule_rows(trigger)
        words = (r.label for r in rows) if labels == "code" else (protocol_text(r) for r in rows)
        label = _mm_text("\n".join([trigger, *dict.fromkeys(words)]) if labels == "code" else "\n".join(
            dict.fromkeys(words)))
        out.append(f"    {_mm_id(ANY_NODE)} --> {_mm_id(dest)} : {label}")
    for name in spec.states:
        if name in table.FINAL_STATES:
            out.append(f"    {_mm_id(name)} --> [*]")
    if view == "lab":
        out.append(f"    note right of {_mm_id(table.INITIAL)}")
        # a note runs to "end note", so the caption keeps its punctuation (only "#" and "%%" are comments)
        caption = LAB_CAPTION.replace("#", "no.").replace("%", " percent")
        out.extend(f"        {line}" for line in textwrap.wrap(caption, 60))
        out.append("    end note")
        out.append(f"    classDef lab fill:{_LAB_FILL},stroke:{_LAB_COLOR},stroke-width:3px")
        names = [n for n in spec.states if any(n in (key[0], key[2]) for key in lab)]
        out.append(f"    class {','.join(_mm_id(n) for n in names)} lab")
    if spec.exits:
        out.append("    classDef exit stroke-dasharray:5 5")
        out.append(f"    class {','.join(_mm_id(n) for n in spec.exits)} exit")
    return "\n".join(out) + "\n"


# --- SVG and files -----------------------------------------------------------------

def dot_sha256(dot_source: str) -> str:
    return hashlib.sha256(dot_source.encode("utf-8")).hexdigest()


def dot_available() -> bool:
    """Whether Graphviz's ``dot`` is on PATH (SVG needs it; DOT and Mermaid do not)."""
    return shutil.which("dot") is not None


def svg_available() -> bool:
    """Whether SVG can be rendered: ``dot`` on PATH and the graphviz package (``[diagrams]``) installed."""
    if not dot_available():
        return False
    try:
        import graphviz  # noqa: F401  (what render_svg drives dot with)
    except ImportError:
        return False
    return True


def svg_hint() -> str:
    """The one line that says what SVG is missing."""
    if not dot_available():
        return SVG_HINT
    return "install the graphviz package for SVG: pip install 'smtp_fsm[diagrams]'"


def render_svg(dot_source: str) -> str:
    """Render DOT to SVG with Graphviz's ``dot``; the SVG records the sha256 of its DOT."""
    # imported here so DOT and Mermaid work without it
    graphviz = require("graphviz", "diagrams", "rendering SVG diagrams")

    try:
        output: bytes = graphviz.pipe("dot", "svg", dot_source.encode("utf-8"))
    except graphviz.ExecutableNotFound as exc:
        raise GraphvizMissing(f"Graphviz's dot program was not found: {SVG_HINT}") from exc
    svg = output.decode("utf-8")
    marker = f"<!-- smtp-fsm-dot-sha256: {dot_sha256(dot_source)} -->\n"
    at = svg.find("<svg")
    if at < 0:
        raise RuntimeError("dot produced no <svg> element")
    return svg[:at] + marker + svg[at:]


def committed_svg(view: str, labels: str = "protocol") -> str | None:
    """The SVG shipped in the package for ``view`` (diagrams/ as ``make diagrams`` wrote it), when it was
    rendered from the DOT the table gives today; None otherwise (or for another label style)."""
    from importlib.resources import files

    try:
        text = (files("smtp_fsm") / "_svg" / f"{view}.svg").read_text(encoding="utf-8")
    except OSError:
        return None
    return text if svg_dot_hash(text) == dot_sha256(to_dot(view, labels)) else None


def svg_for(view: str, labels: str = "protocol") -> str:
    """A view's SVG: rendered by ``dot`` when it is installed, else the one shipped in the package when it
    is today's; ``GraphvizMissing`` (its message says what to install) when neither can be had."""
    dot = to_dot(view, labels)
    if svg_available():
        return render_svg(dot)
    shipped = committed_svg(view, labels)
    if shipped is None:
        raise GraphvizMissing(f"no SVG of the {view!r} view without Graphviz: {svg_hint()}")
    return shipped


def svg_dot_hash(svg_text: str) -> str | None:
    """The sha256 of the DOT an SVG was rendered from, as ``render_svg`` recorded it."""
    match = _HASH_RE.search(svg_text)
    return match.group(1) if match else None


def write_diagrams(out_dir: Path, formats: Iterable[str] = FORMATS, labels: str = "protocol") -> list[Path]:
    """Write ``<view>.dot``, ``.mmd`` and ``.svg`` for every view; return the paths written.

    Without ``dot`` or the graphviz package an SVG is the one shipped in the package when it is
    today's (``svg_for``), else it is skipped (check which were written; ``svg_hint()`` says what to
    install); DOT and Mermaid never need it.
    """
    wanted = list(dict.fromkeys(formats))
    unknown = [f for f in wanted if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def write(path: Path, text: str) -> None:
        path.write_text(text, encoding="utf-8", newline="\n")
        written.append(path)

    sources = {view: to_dot(view, labels) for view in VIEWS}
    for view in VIEWS:
        if "dot" in wanted:
            write(out_dir / f"{view}.dot", sources[view])
        if "mmd" in wanted:
            write(out_dir / f"{view}.mmd", to_mermaid(view, labels))
    if "svg" in wanted:
        for view in VIEWS:
            try:
                svg = svg_for(view, labels)
            except GraphvizMissing:
                continue
            write(out_dir / f"{view}.svg", svg)
    return written


_README_MERMAID = re.compile(r"(<!-- mermaid:machine:start -->\n).*?(<!-- mermaid:machine:end -->)", re.S)


def update_readme(path: Path | str = "README.md") -> bool:
    """Put the whole machine's Mermaid between the README's markers; True when the file changed."""
    readme = Path(path)
    text = readme.read_text(encoding="utf-8")
    block = "```mermaid\n" + to_mermaid("machine") + "```\n"
    updated = _README_MERMAID.sub(lambda m: m.group(1) + block + m.group(2), text)
    if updated != text:
        readme.write_text(updated, encoding="utf-8")
    return updated != text
