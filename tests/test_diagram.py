"""The diagrams are the machine: drawn from the table, deterministic, committed, and checked for drift."""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require_tool

import smtp_fsm
from smtp_fsm.diagram import (
    ANY_NODE,
    LAB_STEPS,
    START_NODE,
    SVG_HINT,
    VIEWS,
    GraphvizMissing,
    build_view,
    committed_svg,
    dot_available,
    dot_sha256,
    protocol_text,
    render_svg,
    svg_dot_hash,
    svg_for,
    to_dot,
    to_mermaid,
    write_diagrams,
)
from smtp_fsm.protocol import table as machine
from smtp_fsm.protocol.runtime import MACHINE

DIAGRAMS = Path(__file__).resolve().parent.parent / "diagrams"
DRIFT = "is out of date with smtp_fsm/protocol/table.py: run `make diagrams` and commit diagrams/"

#: One DOT edge statement as diagram.py writes it: "a" -> "b" [id="...", label="...", ...]
EDGE_RE = re.compile(r'^\s*"([^"]+)" -> "([^"]+)" \[id="([^"]+)"(?:, label="((?:[^"\\]|\\.)*)")?', re.MULTILINE)


def dot_edges(dot: str) -> set[tuple[str, str, str]]:
    """(source, trigger, dest) read back from DOT text (``labels="code"``); the id and the label must agree
    with the endpoints."""
    found: set[tuple[str, str, str]] = set()
    for source, dest, edge_id, label in EDGE_RE.findall(dot):
        if source == START_NODE:
            continue
        id_source, trigger, id_dest = edge_id.split("--")
        assert (id_source, id_dest) == (source, dest), edge_id
        assert label.split("\\n")[0].split(": ")[-1] == trigger, (edge_id, label)
        key = (source, trigger, dest)
        assert key not in found, f"edge drawn twice: {key}"
        found.add(key)
    return found


def runtime_edges() -> set[tuple[str, str, str]]:
    """The edges of the runtime transitions.Machine that sessions use (internal transitions loop)."""
    found: set[tuple[str, str, str]] = set()
    for name, event in MACHINE.events.items():
        for transitions in event.transitions.values():
            for transition in transitions:
                found.add((transition.source, name, transition.dest if transition.dest is not None
                           else transition.source))
    return found


def test_dot_edges_are_the_runtime_machine() -> None:
    drawn = dot_edges(to_dot("machine", "code"))
    assert drawn == machine.edges()
    assert drawn == runtime_edges()
    assert dot_edges(to_dot("lab", "code")) == drawn
    # the protocol-language labels draw the same edges, with the same ids
    ids = {i for _, _, i, _ in EDGE_RE.findall(to_dot("machine"))}
    assert ids == {i for _, _, i, _ in EDGE_RE.findall(to_dot("machine", "code"))}


def test_every_state_is_drawn_with_its_description_and_rfc() -> None:
    dot = to_dot("machine")
    for state in machine.STATES:
        match = re.search(rf'^\s*"{state.name}" \[id="{state.name}", label="([^"]*)"', dot, re.MULTILINE)
        assert match, state.name
        label = match.group(1).replace("\\n", " ")
        assert state.rfc in label
        assert " ".join(state.description.split()) in label


def test_recorded_replies_are_drawn_dashed() -> None:
    dot = to_dot("machine")
    for row in machine.TRANSITIONS:
        if row.recorded:
            line = next(ln for ln in dot.splitlines() if f'id="{row.source}--{row.trigger}--{row.source}"' in ln)
            assert 'style="dashed"' in line and protocol_text(row) in line.replace("\\n", " "), line
    assert "(recorded)" in to_mermaid("transaction")


def test_edges_in_protocol_words_carry_every_row_and_no_code_names() -> None:
    dot = to_dot("machine")
    labels = {i: lab.replace("\\n", "\n") for _, _, i, lab in EDGE_RE.findall(dot)}
    for row in machine.TRANSITIONS:
        label = labels[f"{row.source}--{row.trigger}--{row.dest or row.source}"]
        assert protocol_text(row) in label.split("\n"), (row, label)
        assert label.split("\n")[0] != row.trigger and "[" not in label, label  # no trigger line, no conditions
    assert labels["ehlo--ehlo_reply--starttls"] == "250 to EHLO, STARTTLS offered"
    assert labels["data--data_reply--content"].split("\n")[-1] == "354 to DATA"
    assert "caller: noop(), C: NOOP" in labels["ready--begin_noop--noop"]
    with pytest.raises(ValueError, match="label style"):
        to_dot("machine", "poster")


def test_edges_carry_their_rows_labels_and_conditions() -> None:
    dot = to_dot("machine", "code")
    labels = {(s, d, i): lab.replace("\\n", "\n") for s, d, i, lab in EDGE_RE.findall(dot)}
    for row in machine.TRANSITIONS:
        key = (row.source, row.dest or row.source, f"{row.source}--{row.trigger}--{row.dest or row.source}")
        assert row.label in labels[key]
        for name in row.condition_names:
            assert name in labels[key]


def test_generation_is_deterministic_across_processes() -> None:
    here = {view: (to_dot(view), to_mermaid(view)) for view in VIEWS}
    assert here == {view: (to_dot(view), to_mermaid(view)) for view in VIEWS}
    code = ("import json; from smtp_fsm.diagram import VIEWS, to_dot, to_mermaid; "
            "print(json.dumps({v: [to_dot(v), to_mermaid(v)] for v in VIEWS}))")
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60,
                             check=True).stdout
        assert {v: tuple(pair) for v, pair in json.loads(out).items()} == here


@pytest.mark.parametrize("view", VIEWS)
@pytest.mark.parametrize("ext", ["dot", "mmd"])
def test_committed_diagrams_match_the_table(view: str, ext: str) -> None:
    path = DIAGRAMS / f"{view}.{ext}"
    assert path.exists(), f"diagrams/{path.name} is missing: run `make diagrams`"
    fresh = to_dot(view) if ext == "dot" else to_mermaid(view)
    assert path.read_text(encoding="utf-8") == fresh, f"diagrams/{path.name} {DRIFT}"


@pytest.mark.parametrize("view", VIEWS)
def test_committed_svg_was_rendered_from_the_current_dot(view: str) -> None:
    path = DIAGRAMS / f"{view}.svg"
    assert path.exists(), f"diagrams/{path.name} is missing: run `make diagrams`"
    assert svg_dot_hash(path.read_text(encoding="utf-8")) == dot_sha256(to_dot(view)), f"diagrams/{path.name} {DRIFT}"


def test_render_svg_records_the_dot_hash_and_keeps_the_ids() -> None:
    require_tool("dot", "Debian package graphviz")
    dot = to_dot("machine")
    svg = render_svg(dot)
    assert svg_dot_hash(svg) == dot_sha256(dot)
    ids = {html.unescape(i) for i in re.findall(r'<g id="([^"]+)" class="(?:node|edge)"', svg)}
    assert set(machine.STATE_NAMES) <= ids
    assert {f"{s}--{t}--{d}" for s, t, d in machine.edges()} <= ids
    assert svg_dot_hash("<svg/>") is None


def test_write_diagrams_writes_every_view_and_format(tmp_path: Path) -> None:
    require_tool("dot", "Debian package graphviz")
    written = write_diagrams(tmp_path / "out")
    assert sorted(p.name for p in written) == sorted(f"{v}.{e}" for v in VIEWS for e in ("dot", "mmd", "svg"))
    assert (tmp_path / "out" / "machine.dot").read_text(encoding="utf-8") == to_dot("machine")
    only = write_diagrams(tmp_path / "mmd", formats=["mmd"])
    assert [p.name for p in only] == [f"{v}.mmd" for v in VIEWS]
    with pytest.raises(ValueError, match="png"):
        write_diagrams(tmp_path, formats=["png"])


def test_without_dot_the_shipped_svgs_of_todays_table_are_used(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert not dot_available()
    with pytest.raises(GraphvizMissing, match="apt-get install graphviz"):
        render_svg(to_dot("setup"))
    written = write_diagrams(tmp_path / "out")
    assert sorted(p.suffix for p in written) == sorted([".dot", ".mmd", ".svg"] * len(VIEWS))
    for view in VIEWS:  # the package's copies, rendered from today's DOT
        assert (tmp_path / "out" / f"{view}.svg").read_text(encoding="utf-8") == committed_svg(view)
        assert svg_for(view) == (DIAGRAMS / f"{view}.svg").read_text(encoding="utf-8")
    # another label style was never shipped: its SVGs need dot, and say so
    code = write_diagrams(tmp_path / "code", labels="code")
    assert sorted(p.suffix for p in code) == sorted([".dot", ".mmd"] * len(VIEWS))
    with pytest.raises(GraphvizMissing, match="apt-get install graphviz"):
        svg_for("setup", "code")
    assert "\n" not in SVG_HINT and "graphviz" in SVG_HINT.lower()


@pytest.mark.parametrize("view", VIEWS)
def test_the_package_ships_the_committed_svgs(view: str) -> None:
    shipped = Path(smtp_fsm.__file__).parent / "_svg" / f"{view}.svg"
    assert shipped.read_bytes() == (DIAGRAMS / f"{view}.svg").read_bytes(), f"smtp_fsm/_svg/{view}.svg {DRIFT}"
    assert committed_svg(view) is not None


def test_mermaid_has_every_state_and_edge() -> None:
    text = to_mermaid("machine")
    assert text.splitlines()[3] == "stateDiagram-v2"
    for state in machine.STATE_NAMES:
        assert re.search(rf'^    state "[^"]*" as {state}$', text, re.MULTILINE), state
    arrows = [line for line in text.splitlines() if " --> " in line and "[*]" not in line]
    assert len(arrows) == len(machine.edges())
    for line in arrows:
        # Mermaid ends a transition label at ':' or ';' and starts comments at '#' or '%%'
        label = line.split(" : ", 1)[1]
        assert not set(label) & set(":;#%"), line


def test_partial_views_are_found_in_the_table() -> None:
    setup = build_view("setup")
    assert set(setup.states) == {machine.GREETING, machine.EHLO, machine.HELO, machine.STARTTLS,
                                 machine.TLS_HANDSHAKE, machine.AUTH, machine.AUTH_RESPONSE, machine.AUTH_CANCEL,
                                 machine.READY} | {s for s in machine.STATE_NAMES if s.startswith("auth")}
    transaction = build_view("transaction")
    assert {machine.READY, machine.MAIL, machine.RCPT, machine.DATA, machine.BDAT, machine.CONTENT,
            machine.DATA_ABORT, machine.RSET} <= set(transaction.states)
    # the states of each phase, as the table declares them
    assert {s.name for s in machine.STATES if s.phase == machine.TRANSACTION} <= set(transaction.states)
    assert set(setup.states) - {machine.READY} == set(machine.SETUP_STATES)
    for view in ("setup", "transaction"):
        spec = build_view(view)
        assert set(spec.exits) <= {machine.QUIT, *machine.FINAL_STATES}
        assert {e.key for e in spec.edges} <= machine.edges()
        drawn = dot_edges(to_dot(view, "code"))
        assert {e for e in drawn if e[0] != ANY_NODE} == {e.key for e in spec.edges}
        assert {e[1] for e in drawn if e[0] == ANY_NODE} == set(spec.rule_triggers)


def test_lab_view_highlights_the_classic_lab_path() -> None:
    assert {(s, t, d) for s, t, d, _ in LAB_STEPS} <= machine.edges()
    dot = to_dot("lab")
    for number, (source, trigger, dest, _caption) in enumerate(LAB_STEPS, start=1):
        line = next(ln for ln in dot.splitlines() if f'id="{source}--{trigger}--{dest}"' in ln)
        assert "penwidth" in line and re.search(rf"lab [0-9, ]*\b{number}\b", line), line
    assert "HELO" in dot and "RFC 4954" in dot and "tolerated" in dot
    assert "RFC 4954" in to_mermaid("lab") and "class " in to_mermaid("lab")


def test_unknown_view_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown view"):
        to_dot("nope")
