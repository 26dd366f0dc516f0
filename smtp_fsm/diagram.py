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

from ._extras import GraphvizMissing as GraphvizMissing  # (re-exported: defined beside MissingExtra)
from ._extras import require
from .lab_session import LAB_DIFFERENCES
from .protocol import table

VIEWS: tuple[str, ...] = ("machine", "setup", "auth", "transaction", "content", "endings", "lab")
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

#: The states each page draws in full, in the table's phases; every state is on exactly one page (a
#: test fails for a state added to the table until it is placed).  What a page's edges lead to
#: elsewhere is drawn as a dashed exit; the session-wide rules once, from "any state".
PAGES: dict[str, tuple[str, ...]] = {
    "setup": (table.GREETING, table.EHLO, table.HELO, table.STARTTLS, table.TLS_HANDSHAKE),
    "auth": (table.AUTH, table.AUTH_RESPONSE, table.AUTH_CANCEL),
    "transaction": (table.READY, table.MAIL, table.RCPT, table.DATA, table.DATA_ABORT),
    "content": (table.CONTENT, table.BDAT),
    "endings": (table.RSET, table.NOOP, table.QUIT, table.CLOSED, table.FAILED),
}
#: Per view: Graphviz's rank direction (what fits a 16:9 slide best, measured).
_RANKDIR = {"machine": "TB", "setup": "TB", "auth": "TB", "transaction": "LR", "content": "LR", "endings": "TB",
            "lab": "TB"}
#: Text on a slide: every label at this size, and lines wrapped to fit 1920x1080 (tests/test_diagram.py
#: measures the smallest text of each committed SVG scaled to the screen: at least 14 px).
_FONT_SIZE = 14
_TITLE_SIZE = 18
_WRAP = 22
_LAB_WRAP = 34


def _lab_edges() -> tuple[tuple[str, str, str, str], ...]:
    from .lab_session import lab_path

    return tuple((*key, " / ".join(words)) for key, words in lab_path())


#: The classic teaching lab's session, as the edges it takes, each with its words on the wire
#: (smtp_fsm.lab_session replays the lab's transcript through the engine to find both).
LAB_STEPS: tuple[tuple[str, str, str, str], ...] = _lab_edges()

_TITLES = {
    "machine": "smtp_fsm: the whole client state machine (one page per phase has the words)",
    "setup": "Session setup: greeting, EHLO (or HELO), STARTTLS",
    "auth": "Authentication: AUTH and its challenges",
    "transaction": "The mail transaction: MAIL, RCPT, DATA",
    "content": "The content: after 354 or in BDAT chunks, and the final reply",
    "endings": "RSET, NOOP and the endings: QUIT, closed, failed",
    "lab": "The classic teaching lab, step by step on the wire",
}

_FONT = "Helvetica"
LAB_NOTE = "__lab_note__"
#: What the dashed self-loops are (said once per page rather than on each loop).
RECORDED_CAPTION = "dashed loops: a pipelined reply to MAIL FROM, RCPT TO or BDAT, noted on its message"
_LAB_COLOR = "#d97706"
_LAB_FILL = "#fef3c7"
_RULE_COLOR = "#94a3b8"


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
    """A session-wide rule's rows from the live states that lead where most of them do, and where that is."""
    rows = tuple(r for r in table.TRANSITIONS if r.trigger == trigger and r.source in table.LIVE_STATES)
    dests = [r.dest or r.source for r in rows]
    dest = max(dict.fromkeys(dests), key=dests.count)
    return tuple(r for r in rows if (r.dest or r.source) == dest), dest


#: Where a lab step goes when the reply is a refusal.
_REFUSED_TO = (table.QUIT, table.RSET, table.HELO)
#: Conditions of options and extensions the lab does not use: their rows are not the lab's refusals.
_NOT_THE_LAB = ("quit_after", "lmtp", "chunk", "tls_required", "pipeline", "retry_deferred",
                "window", "rset_due", "resend_due")


def _lab_view() -> View:
    """The lab's path, and for each of its replies the table's refusal rows: where the step goes then."""
    path = {(s, t, d) for s, t, d, _ in LAB_STEPS}
    states = tuple(dict.fromkeys(state for s, _, d, _ in LAB_STEPS for state in (s, d)))
    steps = {(s, t) for s, t, _, _ in LAB_STEPS}
    chosen = []
    for edge in table_edges():
        if edge.key in path:
            chosen.append(edge)
        elif (edge.source, edge.trigger) in steps and edge.dest in _REFUSED_TO:
            rows = tuple(r for r in edge.rows
                         if not any(part in c for c in r.condition_names for part in _NOT_THE_LAB))
            if rows:
                chosen.append(Edge(edge.source, edge.trigger, edge.dest, rows))
    exits = tuple(dict.fromkeys(e.dest for e in chosen if e.dest not in states))
    return View("lab", states, exits, tuple(chosen), ())


def build_view(name: str) -> View:
    """The states and edges a view draws.

    ``machine``: every state and every edge of the table (unlabelled: the pages carry the words), the
    session-wide rules once.  A page (``PAGES``): its states, every edge leaving them, what those lead
    to elsewhere as exits, the rules once.  ``lab``: the lab's path, and where each of its states goes
    when the reply is not the one the lab hoped for.
    """
    if name not in VIEWS:
        raise ValueError(f"unknown view {name!r}; choose from {', '.join(VIEWS)}")
    rules = rule_triggers()
    # A rule's rows that lead where the rule does are drawn once, from "any state"; a state's own
    # exception (the server closing after QUIT is the end, not a failure) stays its own edge.
    edges = tuple(e for e in table_edges() if e.trigger not in rules or e.dest != _rule_rows(e.trigger)[1])
    if name == "machine":
        return View(name, table.STATE_NAMES, (), edges, rules)
    if name == "lab":
        return _lab_view()
    core = PAGES[name]
    chosen = tuple(e for e in edges if e.source in core)
    drawn_rules = rules if any(s in table.LIVE_STATES for s in core) else ()
    # where the rules lead is an exit too: a node with its state's id, not one dot would make up
    ends = [*(e.dest for e in chosen), *(_rule_rows(trigger)[1] for trigger in drawn_rules)]
    exits = tuple(dict.fromkeys(dest for dest in ends if dest not in core))
    return View(name, core, exits, chosen, drawn_rules)


# --- DOT -------------------------------------------------------------------------

def _q(text: str) -> str:
    """A DOT double-quoted string; newlines become DOT's centred line breaks."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _attrs(**attrs: str | float) -> str:
    return "[" + ", ".join(f"{key}={_q(str(value))}" for key, value in attrs.items()) + "]"


def _wrap(text: str, width: int = _WRAP) -> str:
    return "\n".join(textwrap.wrap(text, width, break_on_hyphens=False)) or text


def _state_label(spec: table.StateSpec, brief: bool = False) -> str:
    """A node: the state's name, what it waits for and its RFC section (``brief``: the name alone)."""
    if brief:
        return spec.name
    return "\n".join([spec.name, _wrap(spec.description), _wrap(spec.rfc)])


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


# A row label that names the command sent next ("DATA", "BDAT LAST", "next RCPT TO").
_SENT_NEXT = re.compile(r"(?:next )?(?:MAIL FROM|RCPT TO|DATA|BDAT(?: LAST)?|EHLO|HELO|QUIT|RSET|NOOP)\Z")


def protocol_text(row: table.TransitionSpec) -> str:
    """A row in the protocol's words, made from the table alone: the reply and the command it answers
    ("250 to EHLO, STARTTLS offered", "354 to DATA"), or the event ("the caller sends: MAIL FROM")."""
    if row.trigger in table.EVENT_WORDS:
        # "send a message: MAIL FROM" -> "caller: send a message, C: MAIL FROM"
        return table.EVENT_WORDS[row.trigger].format(label=row.label.replace(": ", ", C: "))
    answered = table.REPLY_TO[row.trigger]
    if row.recorded:
        return f"reply to {answered}, noted on its message"
    head = _REPLY_HEAD.match(row.label)
    if head is None:  # a label without the reply: a command sent next, or what the reply means
        if _SENT_NEXT.match(row.label):
            return f"reply to {answered}, C: {row.label}"
        return f"reply to {answered} ({row.label})" if row.label else f"reply to {answered}"
    code, rest = head.group(1), row.label[head.end():]
    if rest.startswith(": "):  # "250: RCPT TO": the command it sends next
        rest = f", C: {rest[2:]}"
    kind = " reply" if not code[:1].isdigit() or code.endswith(("other", "any")) else ""
    if row.trigger == "greeting_reply":  # the 220 is the greeting itself
        return f"{code}{'' if code[:1].isdigit() else ' reply'} greeting{rest}".replace("other reply", "other")
    return f"{code}{kind} to {answered}{rest}"


def _edge_label(edge: Edge, lab_steps: Sequence[int] = (), labels: str = "protocol", width: int = _WRAP) -> str:
    if labels == "code":
        head = edge.trigger
        if lab_steps:
            head = f"lab {', '.join(str(n) for n in lab_steps)}: {head}"
        return "\n".join([head, *(_row_text(row) for row in edge.rows)])
    lines = list(dict.fromkeys(protocol_text(row) for row in edge.rows))
    if lab_steps:
        lines[0] = f"lab {', '.join(str(n) for n in lab_steps)}: {lines[0]}"
    return "\n".join(_wrap(line, width) for line in lines)


def _check_labels(labels: str) -> None:
    if labels not in LABEL_STYLES:
        raise ValueError(f"unknown label style {labels!r}; choose from {', '.join(LABEL_STYLES)}")


def _any_label(spec: View) -> str:
    """The "any state" node: the rules hold in the live states only (after QUIT the session just ends)."""
    others = [state for state in spec.states if state not in table.LIVE_STATES]
    return f"any state but {', '.join(others)}" if others else "any state"


def _lab_label(number: int, words: str) -> str:
    """A lab step: its number, then each line on the wire (wider than other labels: the lab's page is tall)."""
    return "\n".join(_wrap(part, _LAB_WRAP) for part in f"{number}. {words}".split(" / "))


def to_dot(view: str = "machine", labels: str = "protocol") -> str:
    """The DOT source of a view (see ``VIEWS``), its edges labelled in ``labels`` style (``LABEL_STYLES``)."""
    _check_labels(labels)
    spec = build_view(view)
    specs = {s.name: s for s in table.STATES}
    brief = view in ("machine", "lab")  # the lab's nodes are named; its edges carry the words
    caption = _TITLES[view]  # (the session-wide rules are said by their edges from "any state")
    if labels == "protocol" and view != "machine" and any(edge.recorded for edge in spec.edges):
        caption += "\n" + RECORDED_CAPTION
    out = [
        f"// {_TITLES[view]}",
        "// Generated from smtp_fsm/protocol/table.py by smtp_fsm.diagram (make diagrams); do not edit.",
        "digraph smtp_fsm {",
        "  " + "graph " + _attrs(id=f"view-{view}", label=caption, labelloc="t", fontname=_FONT,
                                 fontsize=_TITLE_SIZE, rankdir=_RANKDIR[view], nodesep=0.3,
                                 ranksep=0.25 if view == "lab" else 0.35,  # (the lab's page is tall)
                                 margin=0.1),
        "  " + "node " + _attrs(shape="box", style="rounded,filled", fillcolor="#f8fafc", color="#334155",
                                fontname=_FONT, fontsize=_FONT_SIZE, margin="0.08,0.04"),
        "  " + "edge " + _attrs(color="#334155", fontname=_FONT, fontsize=_FONT_SIZE, arrowsize=0.7),
    ]
    if table.INITIAL in spec.states:
        out.append(f"  {_q(START_NODE)} " + _attrs(id=START_NODE, shape="point", width=0.15, label=""))
    for name in spec.states:
        attrs: dict[str, str | float] = {"id": name, "label": _state_label(specs[name], brief)}
        if name in table.FINAL_STATES:
            attrs["peripheries"] = 2
        if view == "lab":
            attrs.update(fillcolor=_LAB_FILL, color=_LAB_COLOR, penwidth=2)
        out.append(f"  {_q(name)} " + _attrs(**attrs))
    for name in spec.exits:
        out.append(f"  {_q(name)} " + _attrs(id=name, label=name, style="rounded,dashed",
                                               peripheries=2 if name in table.FINAL_STATES else 1))
    if spec.rule_triggers:
        out.append(f"  {_q(ANY_NODE)} " + _attrs(id=ANY_NODE, label=_any_label(spec), shape="note", style="dashed",
                                                  color=_RULE_COLOR, fontcolor="#475569"))
    if view == "lab":
        out.append(f"  {_q(LAB_NOTE)} " + _attrs(id=LAB_NOTE, label=_wrap(LAB_DIFFERENCES, 40), shape="note",
                                                  color=_LAB_COLOR, fontcolor="#92400e"))
    if table.INITIAL in spec.states:
        out.append(f"  {_q(START_NODE)} -> {_q(table.INITIAL)} " + _attrs(id=START_NODE))
    lab = {(s, t, d): (number, words) for number, (s, t, d, words) in enumerate(LAB_STEPS, start=1)}
    for edge in spec.edges:
        attrs = {"id": edge_id(*edge.key)}
        if view == "lab" and edge.key in lab and labels == "protocol":
            attrs["label"] = _lab_label(*lab[edge.key])
        elif view != "machine":  # (the machine's edges are unlabelled: its pages carry the words)
            attrs["label"] = _edge_label(edge, (lab[edge.key][0],) if view == "lab" and edge.key in lab else (),
                                         labels, _LAB_WRAP if view == "lab" else _WRAP)
        if edge.recorded:
            # a pipelined reply that is only noted on its message: no state change, no action; its
            # words are the page's caption (labelled loops would stack over each other)
            attrs.update(style="dashed", color="#64748b", fontcolor="#475569")
            if labels == "protocol":
                attrs.pop("label", None)
        if view == "lab" and edge.key in lab:
            attrs.update(color=_LAB_COLOR, fontcolor="#92400e", penwidth=3)
        elif view == "lab":
            attrs.update(style="dashed", color=_RULE_COLOR, fontcolor="#475569")
        out.append(f"  {_q(edge.source)} -> {_q(edge.dest)} " + _attrs(**attrs))
    for trigger in spec.rule_triggers:
        rows, dest = _rule_rows(trigger)
        if labels == "code":
            label = "\n".join([trigger, *dict.fromkeys(_row_text(r) for r in rows)])
        else:
            label = "\n".join(_wrap(t) for t in dict.fromkeys(protocol_text(r) for r in rows))
        out.append(f"  {_q(ANY_NODE)} -> {_q(dest)} " + _attrs(id=edge_id(ANY_NODE, trigger, dest), label=label,
                                                                color=_RULE_COLOR, style="dashed"))
    out.append("}")
    return "\n".join(out) + "\n"


# --- Mermaid -------------------------------------------------------------------------

def _mm_text(text: str) -> str:
    """Mermaid state-diagram labels end at ':' or ';' and '#' or '%%' start comments: keep them out."""
    text = text.replace(": ", " - ").replace(";", ",").replace(":", " ").replace("#", "no.").replace("%", " percent")
    text = text.replace("<", "‹").replace(">", "›")  # (Mermaid takes <...> for HTML and drops it)
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
    brief = view in ("machine", "lab")
    lab = {(s, t, d): (number, words) for number, (s, t, d, words) in enumerate(LAB_STEPS, start=1)}
    out = [
        "---",
        f"title: {_TITLES[view].replace(':', ' -')}",
        "---",
        "stateDiagram-v2",
        "    %% Generated from smtp_fsm/protocol/table.py by smtp_fsm.diagram (make diagrams), do not edit.",
    ]
    for name in spec.states:
        out.append(f'    state "{_mm_text(_state_label(specs[name], brief))}" as {_mm_id(name)}')
    for name in spec.exits:
        out.append(f'    state "{_mm_text(name)}" as {_mm_id(name)}')
    if spec.rule_triggers:
        out.append(f'    state "{_mm_text(_any_label(spec))}" as {_mm_id(ANY_NODE)}')
    if table.INITIAL in spec.states:
        out.append(f"    [*] --> {_mm_id(table.INITIAL)}")
    for edge in spec.edges:
        mark = "(recorded) " if edge.recorded else ""
        if view == "lab" and edge.key in lab and labels == "protocol":
            text = _lab_label(*lab[edge.key])
        elif view == "machine":
            text = ""
        else:
            text = _edge_label(edge, (lab[edge.key][0],) if view == "lab" and edge.key in lab else (), labels)
        label = _mm_text(text.replace("\n[", " ["))
        out.append(f"    {_mm_id(edge.source)} --> {_mm_id(edge.dest)}" + (f" : {mark}{label}" if label or mark
                                                                          else ""))
    for trigger in spec.rule_triggers:
        rows, dest = _rule_rows(trigger)
        words = [trigger, *dict.fromkeys(r.label for r in rows)] if labels == "code" else list(
            dict.fromkeys(protocol_text(r) for r in rows))
        out.append(f"    {_mm_id(ANY_NODE)} --> {_mm_id(dest)} : {_mm_text(chr(10).join(words))}")
    for name in (*spec.states, *spec.exits):
        if name in table.FINAL_STATES:
            out.append(f"    {_mm_id(name)} --> [*]")
    if view == "lab":
        out.append(f"    note right of {_mm_id(table.INITIAL)}")
        # a note runs to "end note", so it keeps its punctuation (only "#" and "%%" are comments)
        note = LAB_DIFFERENCES.replace("#", "no.").replace("%", " percent")
        out.extend(f"        {line}" for line in textwrap.wrap(note, 60))
        out.append("    end note")
        out.append(f"    classDef lab fill:{_LAB_FILL},stroke:{_LAB_COLOR},stroke-width:3px")
        out.append(f"    class {','.join(_mm_id(n) for n in spec.states)} lab")
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


def smallest_text_px(svg_text: str, width: int = 1920, height: int = 1080) -> float:
    """The height in pixels of the smallest text of an SVG shown fitted to a ``width`` x ``height`` screen
    (a projector): its smallest font size, times Graphviz's scale transform, times the fit."""
    view_box = re.search(r'viewBox="([-\d. ]+)"', svg_text)
    sizes = [float(size) for size in re.findall(r'font-size="([\d.]+)"', svg_text)]
    if view_box is None or not sizes:
        raise ValueError("not an SVG with a viewBox and text")
    _, _, box_width, box_height = (float(part) for part in view_box.group(1).split())
    scale = re.search(r'class="graph" transform="scale\(([\d.]+)', svg_text)
    fit = min(width / box_width, height / box_height)
    return min(sizes) * (float(scale.group(1)) if scale else 1.0) * fit


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
