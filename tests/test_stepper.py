"""The lecture stepper: real sessions' traces on the diagrams, checked as HTML and in headless Chromium."""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from conftest import headless_chromium

from smtp_fsm.auth import Credentials
from smtp_fsm.diagram import LAB_STEPS, PAGES, build_view, edge_id, rule_triggers
from smtp_fsm.protocol import table as machine
from smtp_fsm.stepper import PAGES_VIEW, SHOWN_LINES, STEPPER_VIEWS, render_stepper, step_edges, write_stepper
from smtp_fsm.stepper._table import PAGE_OF
from smtp_fsm.sync import SMTPClient
from smtp_fsm.testing import LocalSMTPServer, SessionStepper
from smtp_fsm.trace import MASK, TraceStep

NAMESPACES = ('xmlns="http://www.w3.org/2000/svg"', 'xmlns:xlink="http://www.w3.org/1999/xlink"')
PAGE_JS = Path(__file__).parent.parent / "smtp_fsm" / "stepper" / "page.js"
#: Where the Chromium tests leave their screenshots when this is set (the teaching guide's come from here).
SHOTS = os.environ.get("SMTP_FSM_SCREENSHOTS")


@pytest.fixture(scope="module")
def lab_trace() -> list[TraceStep]:
    """The classic lab's session against aiosmtpd: EHLO, AUTH LOGIN, MAIL, RCPT, DATA, QUIT, in lockstep."""
    with LocalSMTPServer(credentials={"student": "secret"}, auth_require_tls=False) as server:
        with SMTPClient(server.host, server.port, timeout=10, username="student", password="secret",
                        auth_mechanism="LOGIN", pipelining=False, trace=True) as client:
            message = EmailMessage()
            message["From"] = "student@example.org"
            message["To"] = "teacher@example.org"
            message["Subject"] = "lab"
            message.set_content("hello from the lab\n")
            client.send_message(message)
            client.quit()
        assert len(server.messages) == 1
    assert client.trace is not None
    return list(client.trace)


LONG_BODY = b"Subject: long\r\n\r\n" + b"".join(b"line %d of the content\r\n" % n for n in range(1, 31))


def pipelined_trace() -> list[TraceStep]:
    """PIPELINING: two messages, a refused recipient, a long content, then a 421 in the second."""
    step = SessionStepper(local_hostname="client.test")
    step.session.sendmail("a@example.org", ["b@example.org", "c@example.org"], LONG_BODY)
    step.session.sendmail("a@example.org", ["d@example.org"], b"Subject: y\r\n\r\nhi\r\n")
    for reply in (b"220 hi\r\n", b"250-hi\r\n250 PIPELINING\r\n",
                  b"250 ok\r\n250 ok\r\n550 5.1.1 no such user\r\n354 go\r\n", b"250 2.0.0 queued\r\n250 ok\r\n",
                  b"250 ok\r\n354 go\r\n", b"421 4.3.2 going down\r\n"):
        step.feed(reply)
    return step.trace


def login_trace(mechanism: str, *challenges: bytes) -> list[TraceStep]:
    step = SessionStepper(local_hostname="client.test", username="student", password="lab3-password",
                          auth_mechanism=mechanism, allow_insecure_auth=True)
    step.feed(b"220 mx\r\n")
    step.feed(f"250-mx\r\n250 AUTH {mechanism}\r\n".encode())
    for challenge in challenges:
        step.feed(b"334 " + challenge + b"\r\n")
    step.feed(b"235 2.7.0 ok\r\n")
    return step.trace


def _items(page: str) -> list[dict[str, str]]:
    found = re.findall(r'<li id="fsm-step-(\d+)" data-before="([^"]*)" data-after="([^"]*)" data-view="([^"]*)" '
                       r'data-edge="([^"]*)" data-undrawn="([^"]*)" data-explain="([^"]*)">(.*?)</li>', page, re.S)
    keys = ("number", "before", "after", "view", "edge", "undrawn", "explain", "body")
    return [dict(zip(keys, (*(html.unescape(part) for part in item[:-1]), item[-1]), strict=True)) for item in found]


def _visible(markup: str) -> str:
    """The text a reader sees: tags dropped first, then entities decoded (the text has <addresses>)."""
    return html.unescape(re.sub(r"<[^>]+>", "", markup))


def _svg_ids(page: str, kind: str) -> set[str]:
    return {html.unescape(i) for i in re.findall(rf'<g id="([^"]+)" class="{kind}"', page)}


def _page_data(page: str) -> dict[str, Any]:
    match = re.search(r'<script type="application/json" id="fsm-data">(.*?)</script>', page, re.S)
    assert match is not None
    data: dict[str, Any] = json.loads(match.group(1))
    return data


def test_the_lab_session_takes_the_lab_path(lab_trace: list[TraceStep]) -> None:
    assert step_edges(lab_trace) == [(s, t, d) for s, t, d, _ in LAB_STEPS]


@pytest.mark.parametrize(
    ("replies", "pipelining", "expected"),
    [
        # DATA refused after the recipient was accepted: data_reply's refusal row
        ([b"220 hi\r\n", b"250 ok\r\n", b"250 ok\r\n", b"250 ok\r\n", b"554 no\r\n", b"250 ok\r\n"], False,
         (machine.DATA, "data_reply", machine.RSET)),
        # the only recipient refused: RSET before DATA is ever sent
        ([b"220 hi\r\n", b"250 ok\r\n", b"250 ok\r\n", b"550 no\r\n", b"250 ok\r\n"], False,
         (machine.RCPT, "rcpt_reply", machine.RSET)),
        # pipelined: MAIL, RCPT, DATA together; their replies are recorded in data, and 354 is DATA's
        ([b"220 hi\r\n", b"250-hi\r\n250 PIPELINING\r\n", b"250 ok\r\n", b"250 ok\r\n", b"354 go\r\n",
          b"250 queued\r\n"], True, (machine.DATA, "data_reply", machine.CONTENT)),
        # 421 in the middle of the transaction
        ([b"220 hi\r\n", b"250 ok\r\n", b"421 bye\r\n"], False, (machine.MAIL, "server_shutdown", machine.FAILED)),
    ],
)
def test_steps_map_to_the_edge_the_session_took(replies: list[bytes], pipelining: bool,
                                                 expected: tuple[str, str, str]) -> None:
    step = SessionStepper(local_hostname="client.test", pipelining=pipelining)
    step.session.sendmail("a@example.org", ["b@example.org"], b"Subject: x\r\n\r\nhi\r\n")
    for reply in replies:
        step.feed(reply)
    edges = step_edges(step.trace)
    assert expected in edges
    for traced, edge in zip(step.trace, edges, strict=True):
        if edge is not None:
            assert (edge[0], edge[2]) == (traced.state_before, traced.state_after)
            assert edge in machine.edges()


# --- the page as HTML ----------------------------------------------------------------------

@pytest.mark.parametrize("view", STEPPER_VIEWS)
def test_every_step_lights_an_edge_its_view_draws(view: str, lab_trace: list[TraceStep],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Without Graphviz: the SVGs of today's table ship in the package."""
    from smtp_fsm import diagram

    monkeypatch.setattr(diagram, "svg_available", lambda: False)
    steps = [*lab_trace, *pipelined_trace()]
    page = render_stepper(steps, title="Lab <1>", view=view)
    items = _items(page)
    assert [int(item["number"]) for item in items] == list(range(1, len(steps) + 1))
    nodes, edges = _svg_ids(page, "node"), _svg_ids(page, "edge")
    for step, item, key in zip(steps, items, step_edges(steps), strict=True):
        assert (item["before"], item["after"]) == (step.state_before, step.state_after)
        shown = item["view"]
        if view == PAGES_VIEW:  # the page of the phase the step starts in, where its edge is drawn
            assert shown == PAGE_OF[key[0] if key else step.state_before]
        else:
            assert shown == view
        if item["edge"]:
            assert f"{shown}/{item['edge']}" in edges, item
        if view in (PAGES_VIEW, "machine"):  # every move of the table is drawn there
            assert key is None or item["edge"], item
            assert f"{shown}/{step.state_after}" in nodes, item
    if view == "lab":  # the lab's own session is all on the lab's view
        assert all(item["edge"] for item in items[: len(lab_trace)])
    assert "<title>Lab &lt;1&gt;</title>" in page


def test_page_needs_no_network(lab_trace: list[TraceStep]) -> None:
    page = render_stepper(lab_trace)
    rest = page
    for namespace in NAMESPACES:
        rest = rest.replace(namespace, "")
    assert "http://" not in rest and "https://" not in rest
    assert not re.search(r"\b(src|href)\s*=", rest)
    assert "<link" not in rest and "@import" not in rest and "url(" not in rest
    assert "default-src 'none'" in page  # the CSP forbids any fetch the page might grow later
    assert page.count("<svg") == len(PAGES)  # one per phase's page
    assert render_stepper(lab_trace, view="lab").count("<svg") == 1


def test_each_step_shows_exactly_the_row_it_fired(lab_trace: list[TraceStep]) -> None:
    steps = [*lab_trace, *pipelined_trace()]
    items = _items(render_stepper(steps))
    for step, item in zip(steps, items, strict=True):
        shown = [int(n) for n in re.findall(r'<div class="row" data-row="(\d+)">', item["body"])]
        assert shown == list(step.rows or ()), item
        named = {int(n) for n in re.findall(r"\brow (\d+):", item["explain"])}
        assert named == set(step.rows or ()), item["explain"]  # never the other candidate rows
    data_step, fired = next((item, step.rows) for step, item in zip(steps, items, strict=True)
                            if step.state_before == machine.DATA and step.state_after == machine.CONTENT)
    assert fired is not None and len(fired) == 1
    candidates = [r for r in machine.TRANSITIONS if (r.source, r.trigger, r.dest) == (machine.DATA, "data_reply",
                                                                                     machine.CONTENT)]
    assert len(candidates) > 1  # the edge has several rows (LMTP, the next message queued) ...
    assert data_step["explain"].startswith(f"row {fired[0]}: 354 to DATA: data → content. Now content")
    assert "LMTP" not in data_step["explain"] and "next message" not in data_step["explain"]  # ... one fired


def test_words_not_reprs(lab_trace: list[TraceStep]) -> None:
    page = render_stepper([*lab_trace, *pipelined_trace()])
    for repr_text in ("SessionReady(", "mappingproxy", "Reply(code", "MessageSent(", "Closed(", "SendResult"):
        assert repr_text not in page
    assert "→ message 1 delivered: accepted for b@example.org; refused for c@example.org (550 5.1.1 no such user)" \
        in html.unescape(page)
    assert "→ the session is open (not encrypted, authenticated as student)" in html.unescape(page)
    assert "→ message 2 uncertain: accepted for d@example.org; because server is shutting down (421)" \
        in html.unescape(page)
    assert "→ error (ServerDisconnected): server is shutting down (421)" in html.unescape(page)


def test_each_pipelined_reply_stands_beside_the_command_it_answers() -> None:
    steps = pipelined_trace()
    items = _items(render_stepper(steps))
    bodies = [_visible(item["body"]) for item in items]
    refused = next(body for body in bodies if "S: 550 5.1.1 no such user" in body)
    assert "S: 550 5.1.1 no such user\n↳ answers C: RCPT TO:<c@example.org>" in refused
    second_mail = [body for body in bodies if "↳ answers C: MAIL FROM:<a@example.org>" in body]
    assert len(second_mail) == 2  # one per message: the second group went out with the first's content
    assert any("S: 354 go\n↳ answers C: DATA" in body for body in bodies)
    assert any("S: 250 2.0.0 queued\n↳ answers C: ." in body for body in bodies)


def test_auth_login_and_plain_are_decoded_and_credentials_stay_masked() -> None:
    login = login_trace("LOGIN", b"VXNlcm5hbWU6", b"UGFzc3dvcmQ6")
    page = _visible(render_stepper(login))
    assert "S: 334 VXNlcm5hbWU6\n   = base64 of “Username:”" in page
    assert "= base64 of “Password:”" in page
    assert page.count("(credentials: a trace never records them)") == 2
    assert "lab3-password" not in page and base64.b64encode(b"lab3-password").decode() not in page
    # the demo's page: its throw-away account put back, by the engine's own mechanism functions
    text = _visible(render_stepper(login, demo_credentials=Credentials("student", "lab3-password")))
    assert f"C: {base64.b64encode(b'student').decode()}\n   = base64 of “student”" in text
    assert f"C: {base64.b64encode(b'lab3-password').decode()}\n   = base64 of “lab3-password”" in text
    assert "never records them" not in text and MASK.decode() not in text  # not even what a reply answers
    assert f"↳ answers C: {base64.b64encode(b'lab3-password').decode()}" in text

    plain = login_trace("PLAIN")
    masked = _visible(render_stepper(plain))
    assert "C: AUTH PLAIN <credentials>" in masked and "(credentials: a trace never records them)" in masked
    shown = _visible(render_stepper(plain, demo_credentials=Credentials("student", "lab3-password")))
    initial = base64.b64encode(b"\0student\0lab3-password").decode()
    assert f"C: AUTH PLAIN {initial}" in shown and "= base64 of “\\0student\\0lab3-password”" in shown


def test_the_message_content_can_be_expanded_in_full() -> None:
    items = _items(render_stepper(pipelined_trace()))
    content = next(item for item in items if "line 1 of the content" in item["body"])
    visible, _, folded = content["body"].partition("<details>")
    assert visible.count('<span class="C">') == SHOWN_LINES
    folded_text = html.unescape(folded)
    assert all(f"line {n} of the content" in content["body"] for n in range(1, 31))
    assert "line 30 of the content" in folded_text and "C: ." in folded_text
    assert re.search(r"<summary>\d+ more lines \([\d,]+ bytes sent in this step\): show them all</summary>", folded)


def test_explore_mode_reads_the_tables_rows(lab_trace: list[TraceStep]) -> None:
    data = _page_data(render_stepper(lab_trace))
    rows = data["rows"]
    assert len(rows) == len(machine.TRANSITIONS)
    for record, row in zip(rows, machine.TRANSITIONS, strict=True):
        assert (record["index"], record["trigger"], record["source"], record["dest"], record["label"],
                record["recorded"], record["after"]) == (
            row.index, row.trigger, row.source, row.dest or row.source, row.label, row.recorded, list(row.after))
        assert [c["name"] for c in record["conditions"]] == list(row.condition_names)
        assert all(c["words"] for c in record["conditions"])  # every condition has its words (its docstring)
    assert [s["name"] for s in data["states"]] == list(machine.STATE_NAMES)
    assert set(data["rules"]) == set(rule_triggers())
    # ... and the page's script holds no protocol of its own: no state or trigger is named in it
    script = PAGE_JS.read_text(encoding="utf-8")
    for name in (*machine.STATE_NAMES, *machine.TRIGGERS):
        assert f'"{name}"' not in script, name


# --- in headless Chromium ------------------------------------------------------------------

_MEASURE = """
const fig = Array.from(document.querySelectorAll('.fsm-view')).find(f => !f.hidden);
const svg = fig.querySelector('svg');
const graph = svg.querySelector('g.graph');
const m = graph.transform.baseVal.consolidate().matrix;
const scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
const sizes = Array.from(svg.querySelectorAll('text[font-size]')).map(t => parseFloat(t.getAttribute('font-size')));
const active = svg.querySelector('g.node.fsm-active');
const pane = fig.getBoundingClientRect();
const r = active ? active.getBoundingClientRect() : null;
const takenEl = svg.querySelector('g.edge.fsm-taken');
const taken = takenEl ? takenEl.getBoundingClientRect() : null;
const activeText = active ? Array.from(active.querySelectorAll('text'))
  .map(t => parseFloat(t.getAttribute('font-size')) * m.a * scale) : [];
return {view: fig.dataset.view, smallest: Math.min(...sizes) * m.a * scale, activeText: activeText,
        active: active ? active.id : null, taken: Array.from(svg.querySelectorAll('g.edge.fsm-taken')).map(e => e.id),
        node: r ? [r.left, r.top, r.right, r.bottom] : null, pane: [pane.left, pane.top, pane.right, pane.bottom],
        edge: taken ? [taken.left, taken.top, taken.right, taken.bottom] : null,
        viewport: [window.innerWidth, window.innerHeight]};
"""


@pytest.fixture
def chromium(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Headless Chromium as a 1920x1080 projector, without camera animations to wait for; at the end of
    the test the page must have logged no script error."""
    driver = headless_chromium(tmp_path / "profile", monkeypatch, "--hide-scrollbars")
    try:
        driver.set_page_load_timeout(30)
        driver.set_script_timeout(10)
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": 1920, "height": 1080, "deviceScaleFactor": 1, "mobile": False})
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia",
                               {"features": [{"name": "prefers-reduced-motion", "value": "reduce"}]})
        yield driver
        _assert_no_script_errors(driver)
    finally:
        driver.quit()


def _assert_no_script_errors(driver: Any) -> None:
    errors = [entry for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]
    assert not errors, errors


def _shot(driver: Any, name: str) -> None:
    """A JPEG of the page as it is now (docs/_static/stepper holds the ones the teaching guide shows)."""
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "jpeg", "quality": 80})
        (Path(SHOTS) / f"{name}.jpg").write_bytes(base64.b64decode(shot["data"]))


@pytest.mark.parametrize("view", ["pages", "lab", "machine"])
def test_the_current_state_stays_in_view_and_legible_at_1920x1080(
        view: str, tmp_path: Path, lab_trace: list[TraceStep], chromium: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    driver = chromium
    page = write_stepper(lab_trace, tmp_path / "stepper.html", view=view)
    driver.get(page.as_uri())
    wait = WebDriverWait(driver, 10)
    assert driver.execute_script("return [window.innerWidth, window.innerHeight]") == [1920, 1080]
    body = driver.find_element(By.TAG_NAME, "body")
    count = len(lab_trace)
    for number in (1, 2, 3, count // 2, count - 1, count):
        body.send_keys(Keys.HOME)
        for _ in range(number - 1):
            body.send_keys(Keys.ARROW_RIGHT)
        wait.until(lambda d, n=number: d.find_element(By.ID, "fsm-counter").text == f"step {n} of {count}")
        seen = driver.execute_script(_MEASURE)
        step = lab_trace[number - 1]
        assert seen["active"] == f"{seen['view']}/{step.state_after}", seen
        left, top, right, bottom = seen["node"]
        pane_left, pane_top, pane_right, pane_bottom = seen["pane"]
        assert pane_left <= left and right <= pane_right and pane_top <= top and bottom <= pane_bottom, seen
        assert right <= 1920 and bottom <= 1080
        assert seen["smallest"] >= 14, seen  # every word on the diagram, not only the active state's
        assert min(seen["activeText"]) >= 14, seen
        key = step_edges([step])[0]
        assert key is not None
        expected = {edge_id(*key), edge_id("__any__", key[1], key[2])}
        assert {taken.split("/", 1)[1] for taken in seen["taken"]} <= expected and seen["taken"], seen
        # the edge taken is on the screen too (whole when it fits at a legible scale, else where it ends)
        e_left, e_top, e_right, e_bottom = seen["edge"]
        assert e_left < pane_right and e_right > pane_left and e_top < pane_bottom and e_bottom > pane_top, seen
        if number in (1, count // 2, count):
            _shot(driver, f"{view}-step{number}")


def test_explore_mode_walks_the_table_from_a_state(tmp_path: Path, lab_trace: list[TraceStep],
                                                   chromium: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = chromium
    page = write_stepper(lab_trace, tmp_path / "stepper.html")
    rules = set(rule_triggers())

    def listed(list_id: str) -> list[int]:
        return [int(b.get_attribute("data-row")) for b in driver.find_elements(By.CSS_SELECTOR, f"#{list_id} button")]

    driver.get(page.as_uri())
    wait = WebDriverWait(driver, 10)
    into_rcpt = next(n for n, step in enumerate(lab_trace, 1) if step.state_after == machine.RCPT)
    driver.find_element(By.ID, f"fsm-step-{into_rcpt}").click()
    driver.find_element(By.ID, "fsm-explore").click()
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-mode") == "explore")
    assert driver.find_element(By.CSS_SELECTOR, "#fsm-explorer h2").text == "Explore: in rcpt"
    from_rcpt = [r for r in machine.TRANSITIONS if r.source == machine.RCPT]
    assert listed("fsm-explore-rows") == [r.index for r in from_rcpt if r.trigger not in rules]
    assert listed("fsm-explore-rules") == [r.index for r in from_rcpt if r.trigger in rules]
    _shot(driver, "explore-rcpt")

    # "what if the server answers 550 to RCPT?": nobody accepted, so RSET
    refused = next(r for r in from_rcpt if r.dest == machine.RSET)
    driver.find_element(By.CSS_SELECTOR, f'#fsm-explore-rows button[data-row="{refused.index}"]').click()
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#fsm-explorer h2").text == "Explore: in rset")
    seen = driver.execute_script(_MEASURE)
    assert seen["view"] == PAGE_OF[machine.RCPT]  # the move is shown where it starts
    assert seen["taken"] == [f"{seen['view']}/{edge_id(machine.RCPT, 'rcpt_reply', machine.RSET)}"]
    assert seen["active"] == f"{seen['view']}/{machine.RSET}"
    assert min(seen["activeText"]) >= 14
    assert listed("fsm-explore-rows") == [r.index for r in machine.TRANSITIONS
                                          if r.source == machine.RSET and r.trigger not in rules]
    now = driver.find_element(By.ID, "fsm-now").text
    assert f"row {refused.index}" in now and "rcpt → rset" in now
    _shot(driver, "explore-rset")

    # a session-wide rule lights its one edge from "any state"
    shutdown = next(r for r in machine.TRANSITIONS if r.source == machine.RSET and r.trigger == "server_shutdown")
    driver.find_element(By.CSS_SELECTOR, f'#fsm-explore-rules button[data-row="{shutdown.index}"]').click()
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#fsm-explorer h2").text == "Explore: in failed")
    seen = driver.execute_script(_MEASURE)
    assert seen["taken"] == [f"{seen['view']}/{edge_id('__any__', 'server_shutdown', machine.FAILED)}"]
    assert driver.find_elements(By.CSS_SELECTOR, "#fsm-explore-rows button") == []  # nothing leaves failed

    driver.find_element(By.ID, "fsm-explore-back").click()
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#fsm-explorer h2").text == "Explore: in rset")
    driver.find_element(By.ID, "fsm-explore").click()  # back to the replay, where it was
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-mode") == "replay")
    assert driver.find_element(By.ID, "fsm-counter").text == f"step {into_rcpt} of {len(lab_trace)}"


def test_printing_gives_a_handout_without_controls(tmp_path: Path, lab_trace: list[TraceStep],
                                                   chromium: Any) -> None:
    from pypdf import PdfReader
    from selenium.webdriver.common.by import By

    driver = chromium
    page = write_stepper(lab_trace, tmp_path / "stepper.html", title="Handout")
    driver.get(page.as_uri())
    driver.find_element(By.ID, "fsm-step-3").click()
    pdf = base64.b64decode(driver.print_page())
    (tmp_path / "handout.pdf").write_bytes(pdf)
    reader = PdfReader(io.BytesIO(pdf))
    text = "\n".join(p.extract_text() or "" for p in reader.pages)
    assert len(reader.pages) >= 2
    for control in ("previous", "next ▶", "explore", "auto", "step 3 of"):
        assert control not in text, control
    assert "Handout" in text and "C: EHLO" in text and "C: QUIT" in text
    # every phase's page is printed whole: their titles are in the handout
    for title in ("Session setup", "Authentication", "The mail transaction", "The content", "RSET, NOOP"):
        assert title in text, title
    assert all(f"{n}. " in text for n in range(1, len(lab_trace) + 1))


def test_the_handout_has_the_whole_content(tmp_path: Path, chromium: Any) -> None:
    from pypdf import PdfReader

    page = write_stepper(pipelined_trace(), tmp_path / "stepper.html", view="transaction")
    chromium.get(page.as_uri())
    pdf = PdfReader(io.BytesIO(base64.b64decode(chromium.print_page())))
    text = "\n".join(p.extract_text() or "" for p in pdf.pages)
    assert all(f"line {n} of the content" in text for n in (1, 8, 9, 30)), text
    assert "show them all" not in text
    # ... and the page on the screen folds it again
    assert chromium.execute_script("return document.querySelectorAll('#fsm-transcript details[open]').length") == 0


def test_a_step_off_the_view_says_so(tmp_path: Path, chromium: Any) -> None:
    """On the lab's view a pipelined session leaves the lab's path: those steps light nothing, and say so."""
    from selenium.webdriver.common.by import By

    steps = pipelined_trace()
    page = render_stepper(steps, view="lab")
    drawn = {e.key for e in build_view("lab").edges}
    items = _items(page)
    for item, key in zip(items, step_edges(steps), strict=True):
        assert bool(item["edge"]) == (key in drawn)
        assert item["undrawn"] == ("1" if key is not None and key not in drawn else "")
    off, on = (next(n for n, item in enumerate(items, 1) if bool(item["undrawn"]) is wanted)
               for wanted in (True, False))
    path = tmp_path / "off.html"
    path.write_text(page, encoding="utf-8")
    driver = chromium
    driver.get(path.as_uri())
    for number, noted in ((off, True), (on, False)):
        driver.find_element(By.ID, f"fsm-step-{number}").click()
        said = driver.find_element(By.ID, "fsm-now").text
        assert said.endswith("(not drawn on this view)") is noted, said


def test_a_state_from_another_table_does_not_break_the_page() -> None:
    from dataclasses import replace

    bogus = replace(pipelined_trace()[0], state_before="bogus", rows=None)
    for view in STEPPER_VIEWS:
        [item] = _items(render_stepper([bogus], view=view))
        assert item["before"] == "bogus" and item["edge"] == ""


def test_a_trace_from_before_rows_and_words_still_renders() -> None:
    """A hand-written trace, or one saved by an older version: no rows, no answers, no words."""
    from dataclasses import replace

    steps = pipelined_trace()
    old = [replace(step, rows=None, answers="", words=()) for step in steps]
    assert step_edges(old) == [None] * len(old)
    # a row from another table (it does not fit the step's states) is not drawn either
    assert step_edges([replace(steps[0], rows=(len(machine.TRANSITIONS) - 1,))]) == [None]
    items = _items(render_stepper(old))
    assert all(item["edge"] == "" for item in items)
    assert all("no table row recorded" in item["body"] for item in items)
    assert any("MessageSent(" in html.unescape(item["body"]) for item in items)  # its reprs: all it has
