"""The lecture stepper: a real session's trace replayed on the diagram, checked as HTML and in headless Chromium."""

from __future__ import annotations

import html
import re
from email.message import EmailMessage
from pathlib import Path

import pytest
from conftest import headless_chromium, require_tool

from smtp_fsm.diagram import LAB_STEPS
from smtp_fsm.protocol import table as machine
from smtp_fsm.stepper import render_stepper, step_edges, write_stepper
from smtp_fsm.sync import SMTPClient
from smtp_fsm.testing import LocalSMTPServer, SessionStepper
from smtp_fsm.trace import TraceStep

NAMESPACES = ('xmlns="http://www.w3.org/2000/svg"', 'xmlns:xlink="http://www.w3.org/1999/xlink"')


@pytest.fixture(scope="module")
def lab_trace() -> list[TraceStep]:
    """The classic lab's session against aiosmtpd: EHLO, AUTH LOGIN, MAIL, RCPT, DATA, QUIT."""
    with LocalSMTPServer(credentials={"student": "secret"}, auth_require_tls=False) as server:
        with SMTPClient(server.host, server.port, timeout=10, username="student", password="secret",
                        auth_mechanism="LOGIN", trace=True) as client:
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


def _svg_ids(page: str, kind: str) -> set[str]:
    return {html.unescape(i) for i in re.findall(rf'<g id="([^"]+)" class="{kind}"', page)}


def _scripted(replies: list[bytes], pipelining: bool) -> list[TraceStep]:
    """A sans-IO session fed ``replies`` one by one (each a whole reply), with its trace."""
    step = SessionStepper(local_hostname="client.test", pipelining=pipelining)
    step.session.sendmail("a@example.org", ["b@example.org"], b"Subject: x\r\n\r\nhi\r\n")
    for reply in replies:
        step.feed(reply)
    return step.trace


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
    steps = _scripted(replies, pipelining)
    edges = step_edges(steps)
    assert expected in edges
    for step, edge in zip(steps, edges, strict=True):
        if edge is not None:
            assert (edge[0], edge[2]) == (step.state_before, step.state_after)
            assert edge in machine.edges()


def test_page_has_every_step_and_state(lab_trace: list[TraceStep]) -> None:
    require_tool("dot", "Debian package graphviz")
    page = render_stepper(lab_trace, title="Lab <1>")
    items = re.findall(r'<li id="fsm-step-(\d+)" data-before="([^"]*)" data-after="([^"]*)" data-edge="([^"]*)"',
                       page)
    assert [int(n) for n, *_ in items] == list(range(1, len(lab_trace) + 1))
    nodes, edges = _svg_ids(page, "node"), _svg_ids(page, "edge")
    for step, (_n, before, after, edge) in zip(lab_trace, items, strict=True):
        assert (before, after) == (step.state_before, step.state_after)
        assert step.state_before in nodes and step.state_after in nodes
        assert html.unescape(edge) in edges
    assert "<title>Lab &lt;1&gt;</title>" in page
    assert "S: 220 " in page and "C: EHLO " in page and "C: QUIT" in page
    assert "secret" not in page and "&lt;credentials&gt;" in page


def test_page_needs_no_network(lab_trace: list[TraceStep]) -> None:
    require_tool("dot", "Debian package graphviz")
    page = render_stepper(lab_trace)
    rest = page
    for namespace in NAMESPACES:
        rest = rest.replace(namespace, "")
    assert "http://" not in rest and "https://" not in rest
    assert not re.search(r"\b(src|href)\s*=", rest)
    assert "<link" not in rest and "@import" not in rest and "url(" not in rest
    assert "default-src 'none'" in page  # the CSP forbids any fetch the page might grow later
    assert page.count("<svg") == 1


def test_page_has_the_controls(lab_trace: list[TraceStep]) -> None:
    require_tool("dot", "Debian package graphviz")
    page = render_stepper(lab_trace)
    for element in ('id="fsm-prev"', 'id="fsm-next"', 'id="fsm-counter"', "ArrowRight", "ArrowLeft"):
        assert element in page


def test_write_stepper(tmp_path: Path, lab_trace: list[TraceStep]) -> None:
    require_tool("dot", "Debian package graphviz")
    path = write_stepper(lab_trace, tmp_path / "lecture" / "lab.html", title="lab")
    assert path.read_text(encoding="utf-8") == render_stepper(lab_trace, title="lab")


def test_next_moves_the_highlight_in_chromium(tmp_path: Path, lab_trace: list[TraceStep],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    require_tool("dot", "Debian package graphviz")
    driver = headless_chromium(tmp_path / "profile", monkeypatch, "--window-size=1400,900")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    page = write_stepper(lab_trace, tmp_path / "stepper.html")
    try:
        driver.set_page_load_timeout(30)
        driver.set_script_timeout(10)
        driver.get(page.as_uri())
        wait = WebDriverWait(driver, 10)

        def active() -> str:
            ids = [el.get_attribute("id") for el in driver.find_elements(By.CSS_SELECTOR, "g.node.fsm-active")]
            assert len(ids) == 1, ids
            return str(ids[0])

        def counter() -> str:
            return str(driver.find_element(By.ID, "fsm-counter").text)

        wait.until(lambda d: counter() == f"step 1 of {len(lab_trace)}")
        assert active() == lab_trace[0].state_after
        first_edge = driver.find_elements(By.CSS_SELECTOR, "g.edge.fsm-taken")
        assert [e.get_attribute("id") for e in first_edge] == ["greeting--greeting_reply--ehlo"]

        driver.find_element(By.ID, "fsm-next").click()
        wait.until(lambda d: counter() == f"step 2 of {len(lab_trace)}")
        assert active() == lab_trace[1].state_after != lab_trace[0].state_after
        assert "fsm-current" in str(driver.find_element(By.ID, "fsm-step-2").get_attribute("class"))

        driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_RIGHT)
        wait.until(lambda d: counter() == f"step 3 of {len(lab_trace)}")
        assert active() == lab_trace[2].state_after

        driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_LEFT)
        wait.until(lambda d: counter() == f"step 2 of {len(lab_trace)}")
        assert active() == lab_trace[1].state_after
        logs = driver.get_log("browser")  # type: ignore[no-untyped-call]
        errors = [entry for entry in logs if entry.get("level") == "SEVERE"]
        assert not errors, errors
    finally:
        driver.quit()


def test_every_step_records_its_row_and_pipelined_replies_take_their_recorded_rows() -> None:
    from smtp_fsm import ClientSession
    from smtp_fsm.stepper import step_edges

    session = ClientSession(local_hostname="client.example", trace=True)
    session.sendmail("a@example.org", ["b@example.org"], b"x\r\n")
    for reply in (b"220 mx\r\n", b"250-mx\r\n250 PIPELINING\r\n", b"250 ok\r\n", b"250 ok\r\n", b"354 go\r\n",
                  b"250 queued\r\n"):
        session.receive_data(reply)
        session.data_to_send()
    assert session.trace is not None
    rows = [[machine.TRANSITIONS[index] for index in step.rows or ()] for step in session.trace]
    assert [[row.trigger for row in step_rows] for step_rows in rows] == [
        ["greeting_reply"], ["ehlo_reply"], ["begin_mail"], ["mail_reply"], ["rcpt_reply"], ["data_reply"],
        ["final_reply"]]
    # MAIL's and RCPT's replies arrived in 'data' and only were recorded: the table says so, row by row
    assert [row.recorded for step_rows in rows for row in step_rows] == [False, False, False, True, True, False, False]
    assert all(row.index == index for step in session.trace for row, index in
               zip((machine.TRANSITIONS[i] for i in step.rows or ()), step.rows or (), strict=True))
    edges = step_edges(session.trace)
    assert edges[2] == ("ready", "begin_mail", "data")
    assert edges[3] == ("data", "mail_reply", "data") and edges[4] == ("data", "rcpt_reply", "data")
    assert edges[5] == ("data", "data_reply", "content")
    assert all(edge in machine.edges() for edge in edges)


def test_a_trace_without_rows_takes_no_edge() -> None:
    from dataclasses import replace

    from smtp_fsm import ClientSession
    from smtp_fsm.stepper import step_edges

    session = ClientSession(local_hostname="client.example", trace=True)
    session.receive_data(b"220 mx\r\n")
    assert session.trace is not None
    assert step_edges(session.trace) == [("greeting", "greeting_reply", "ehlo")]
    assert step_edges([replace(step, rows=None) for step in session.trace]) == [None]
    # a row from another table (it does not fit the step's states) is not drawn either
    assert step_edges([replace(step, rows=(len(machine.TRANSITIONS) - 1,)) for step in session.trace]) == [None]


def test_a_session_wide_rule_lights_its_edge_from_any_state() -> None:
    """A 421 in the middle of a transaction: the step's edge is the rule's, drawn once from "any state"."""
    step = SessionStepper(local_hostname="client.test", pipelining=False)
    step.session.sendmail("a@example.org", ["b@example.org"], b"Subject: x\r\n\r\nhi\r\n")
    for reply in (b"220 hi\r\n", b"250 ok\r\n", b"421 4.3.2 going down\r\n"):
        step.feed(reply)
    page = render_stepper(step.trace, title="421")
    edges = re.findall(r'data-edge="([^"]*)"', page)
    assert edges[-1] == "__any__--server_shutdown--failed", edges
    drawn = {html.unescape(i) for i in re.findall(r'<g id="([^"]+)" class="edge"', page)}
    assert all(edge in drawn for edge in edges if edge), set(edges) - drawn
