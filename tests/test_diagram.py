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
    LAB_NOTE,
    LAB_STEPS,
    PAGES,
    RECORDED_CAPTION,
    START_NODE,
    SVG_HINT,
    VIEWS,
    GraphvizMissing,
    build_view,
    committed_svg,
    dot_available,
    dot_sha256,
    edge_id,
    protocol_text,
    render_svg,
    rule_triggers,
    smallest_text_px,
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
    for source, dest, ident, label in EDGE_RE.findall(dot):
        if source == START_NODE:
            continue
        id_source, trigger, id_dest = ident.split("--")
        assert (id_source, id_dest) == (source, dest), ident
        if label:  # (the machine's overview draws no labels)
            assert label.split("\\n")[0].split(": ")[-1] == trigger, (ident, label)
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


RULES = set(rule_triggers())


def page_of(state: str) -> str:
    (page,) = [name for name, states in PAGES.items() if state in states]
    return page


def test_every_state_is_on_exactly_one_page() -> None:
    placed = [state for states in PAGES.values() for state in states]
    assert sorted(placed) == sorted(machine.STATE_NAMES), "place a new state on a page (diagram.PAGES)"


def test_the_pages_and_the_overview_draw_the_runtime_machine() -> None:
    assert runtime_edges() == machine.edges()
    overview = dot_edges(to_dot("machine", "code"))
    plain = {e for e in overview if e[0] != ANY_NODE}
    ruled = {e for e in overview if e[0] == ANY_NODE}
    assert {e[1] for e in ruled} == RULES  # the session-wide rules, drawn once
    # every table edge is drawn: as itself, or as its rule from "any state" (same trigger, same end)
    assert plain <= machine.edges()
    assert all((ANY_NODE, t, d) in ruled and t in RULES for s, t, d in machine.edges() - plain)
    pages: set[tuple[str, str, str]] = set()
    for page, states in PAGES.items():
        drawn = dot_edges(to_dot(page, "code"))
        own = {e for e in drawn if e[0] != ANY_NODE}
        assert own == {e for e in plain if e[0] in states}, page
        assert not pages & own
        pages |= own
    assert pages == plain
    # the protocol-language labels draw the same edges, with the same ids
    for view in VIEWS:
        assert {i for *_, i, _ in EDGE_RE.findall(to_dot(view))} == {i for *_, i, _ in EDGE_RE.findall(
            to_dot(view, "code"))}


def test_every_state_is_drawn_on_its_page_with_its_description_and_rfc() -> None:
    for state in machine.STATES:
        dot = to_dot(page_of(state.name))
        match = re.search(rf'^\s*"{state.name}" \[id="{state.name}", label="([^"]*)"', dot, re.MULTILINE)
        assert match, state.name
        label = match.group(1).replace("\\n", " ")
        assert " ".join(state.rfc.split()) in label
        assert " ".join(state.description.split()) in label


def test_recorded_replies_are_drawn_dashed() -> None:
    for row in machine.TRANSITIONS:
        if row.recorded:
            dot = to_dot(page_of(row.source))
            line = next(ln for ln in dot.splitlines() if f'id="{row.source}--{row.trigger}--{row.source}"' in ln)
            assert 'style="dashed"' in line and "label=" not in line, line  # the page's caption says it
            assert RECORDED_CAPTION in dot.replace("\\n", " ")
            assert row.label in _labels(to_dot(page_of(row.source), "code"))[
                f"{row.source}--{row.trigger}--{row.source}"]
    assert "(recorded)" in to_mermaid("transaction")


def _labels(dot: str) -> dict[str, str]:
    return {i: lab.replace("\\n", "\n") for _, _, i, lab in EDGE_RE.findall(dot)}


def test_edges_in_protocol_words_carry_every_row_and_no_code_names() -> None:
    plain = {e.key for e in build_view("machine").edges}
    for row in machine.TRANSITIONS:
        dest = row.dest or row.source
        if (row.source, row.trigger, dest) not in plain:
            label = _labels(to_dot("setup"))[f"{ANY_NODE}--{row.trigger}--{dest}"]
        elif row.recorded:
            continue  # (drawn unlabelled: the page's caption says what the dashed loops are)
        else:
            label = _labels(to_dot(page_of(row.source)))[f"{row.source}--{row.trigger}--{dest}"]
        assert protocol_text(row) in label.replace("\n", " "), (row, label)
        assert label.split("\n")[0] != row.trigger and "[" not in label, label  # no trigger line, no conditions
    setup = {i: text.replace("\n", " ") for i, text in _labels(to_dot("setup")).items()}
    assert setup["ehlo--ehlo_reply--starttls"] == "250 to EHLO, STARTTLS offered"
    assert _labels(to_dot("transaction"))["data--data_reply--content"].replace("\n", " ").endswith("354 to DATA")
    assert "caller: noop(), C: NOOP" in _labels(to_dot("transaction"))["ready--begin_noop--noop"].replace("\n", " ")
    with pytest.raises(ValueError, match="label style"):
        to_dot("machine", "poster")


def test_edges_carry_their_rows_labels_and_conditions() -> None:
    plain = {e.key for e in build_view("machine").edges}
    for row in machine.TRANSITIONS:
        if (row.source, row.trigger, row.dest or row.source) not in plain:
            continue
        key = f"{row.source}--{row.trigger}--{row.dest or row.source}"
        label = _labels(to_dot(page_of(row.source), "code"))[key]
        assert row.label in label
        for name in row.condition_names:
            assert name in label


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
    assert {edge_id(*e.key) for e in build_view("machine").edges} <= ids  # what the stepper lights
    assert svg_dot_hash("<svg/>") is None


@pytest.mark.parametrize("view", VIEWS)
def test_every_node_drawn_has_the_id_the_stepper_looks_for(view: str) -> None:
    """No node that dot made up (an edge's end nobody declared gets an id like 'view-setup_node11')."""
    svg = (DIAGRAMS / f"{view}.svg").read_text(encoding="utf-8")
    ids = {html.unescape(i) for i in re.findall(r'<g id="([^"]+)" class="node"', svg)}
    assert ids <= {*machine.STATE_NAMES, ANY_NODE, START_NODE, LAB_NOTE}, ids - set(machine.STATE_NAMES)


@pytest.mark.parametrize("view", VIEWS)
def test_every_committed_view_is_legible_on_a_projector(view: str) -> None:
    """Fitted to 1920x1080, the smallest text of every committed SVG is at least 14 px high."""
    svg = (DIAGRAMS / f"{view}.svg").read_text(encoding="utf-8")
    assert smallest_text_px(svg) >= 14, f"{view}: {smallest_text_px(svg):.1f} px"
    # the measure reads Graphviz's scale transform and the fit to the screen
    scaled = svg.replace('class="graph" transform="scale(1 1)', 'class="graph" transform="scale(0.5 0.5)', 1)
    assert scaled != svg and smallest_text_px(scaled) == pytest.approx(smallest_text_px(svg) / 2)
    assert smallest_text_px(svg, 960, 540) == pytest.approx(smallest_text_px(svg) / 2)


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
    assert len(arrows) == len(build_view("machine").edges) + len(RULES)
    for view in VIEWS:
        for line in to_mermaid(view).splitlines():
            if " --> " in line and " : " in line:
                # Mermaid ends a transition label at ':' or ';' and starts comments at '#' or '%%'
                assert not set(line.split(" : ", 1)[1]) & set(":;#%"), line


def test_the_lab_view_is_the_lab_on_the_wire() -> None:
    assert {(s, t, d) for s, t, d, _ in LAB_STEPS} <= machine.edges()
    assert [words.split(" / ")[-1] for *_, words in LAB_STEPS][:2] == ["C: EHLO client.example", "C: AUTH LOGIN"]
    dot = to_dot("lab")
    for number, (source, trigger, dest, _words) in enumerate(LAB_STEPS, start=1):
        line = next(ln for ln in dot.splitlines() if f'id="{source}--{trigger}--{dest}"' in ln)
        assert "penwidth" in line and line.replace("\\n", " ").count(f"{number}. ") == 1, line
    flat = dot.replace("\\n", " ")
    assert "S: 334 VXNlcm5hbWU6 (Username:)" in flat and "S: 334 UGFzc3dvcmQ6 (Password:)" in flat
    assert "RFC 4954 §3" in flat and "RFC 5321 §4.1.4" in flat and "HELO" in flat
    # where a refusal at each step goes, from the table: 535 to AUTH quits, a refused sender is reset
    assert 'id="auth--auth_reply--quit"' in dot and 'id="mail--mail_reply--rset"' in dot
    assert "quit_after" not in flat  # (rows for options the lab does not use are left out)
    assert "RFC 4954" in to_mermaid("lab") and "class " in to_mermaid("lab")


def test_unknown_view_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown view"):
        to_dot("nope")
