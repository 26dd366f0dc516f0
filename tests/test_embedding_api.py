"""The engine's surface as an embedder types it: the event union, the states, the options, smtplib's shapes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from drivers import DRIVERS, make_client
from sansio_helpers import CLIENT, GREETING, ready, reply

import smtp_fsm
from smtp_fsm import NEED_DATA, ClientSession, NeedData, SessionEvent, State
from smtp_fsm.testing.servers import LocalSMTPServer

ROOT = Path(__file__).resolve().parent.parent
MESSAGE = b"Subject: t\r\n\r\nbody\r\n"


def test_need_data_is_a_sentinel_outside_the_events() -> None:
    assert not isinstance(NEED_DATA, smtp_fsm.Event) and isinstance(NEED_DATA, NeedData)
    assert repr(NEED_DATA) == "NEED_DATA" and list(NeedData) == [NEED_DATA]
    session = ClientSession(local_hostname=CLIENT)
    assert session.next_event() is NEED_DATA


def test_the_event_union_names_every_event_class() -> None:
    members = set(SessionEvent.__args__)
    defined = {cls for cls in vars(smtp_fsm.events).values()
               if isinstance(cls, type) and issubclass(cls, smtp_fsm.Event) and cls is not smtp_fsm.Event}
    assert members == defined


def test_state_is_a_str_enum_of_the_table_states() -> None:
    from smtp_fsm.protocol import table

    assert [state.value for state in State] == list(table.STATE_NAMES)
    session = ClientSession(local_hostname=CLIENT)
    assert session.state is State.GREETING and session.state == "greeting"
    session.receive_data(GREETING)
    assert session.state is State.EHLO


def test_unknown_send_options_are_refused_before_anything_is_queued() -> None:
    harness = ready("PIPELINING")
    with pytest.raises(TypeError, match="bogus"):
        harness.session.sendmail("a@example.org", ["b@example.org"], MESSAGE, bogus=1)  # type: ignore[call-arg]
    assert harness.session.data_to_send() == b"" and harness.session.awaiting is None


@pytest.mark.parametrize("kind", DRIVERS)
def test_drivers_refuse_unknown_options_and_answer_has_extn(kind: str, smtp_server: LocalSMTPServer) -> None:
    with make_client(kind, smtp_server.host, smtp_server.port) as client:
        assert client.has_extn("8bitmime") and client.has_extn("SIZE") and not client.has_extn("CHUNKING")
        with pytest.raises(TypeError):
            client.sendmail("a@example.org", ["b@example.org"], MESSAGE, bogus=1)
        assert client.sendmail("a@example.org", ["b@example.org"], MESSAGE).ok
    assert len(smtp_server.messages) == 1


def test_smtplib_refused_has_smtplibs_shape() -> None:
    harness = ready()
    harness.session.sendmail("a@example.org", ["ok@example.org", "no@example.org"], MESSAGE)
    harness.pending()
    harness.feed(reply(250, "ok"))
    harness.feed(reply(250, "ok"))
    harness.feed(reply(550, "5.1.1 no such user", "try another"))
    harness.feed(reply(354, "go"))
    (result,) = harness.feed(reply(250, "queued")).results.values()
    assert result.ok and result.smtplib_refused == {"no@example.org": (550, b"5.1.1 no such user\ntry another")}


def test_capabilities_has_extn_ignores_case() -> None:
    caps = smtp_fsm.Capabilities.from_reply(smtp_fsm.Reply(250, ("mx", "PIPELINING", "size 100")))
    assert caps.has_extn("pipelining") and caps.has_extn("SIZE") and not caps.has_extn("STARTTLS")


MATCH_ALL = '''
from typing import assert_never
import smtp_fsm

def handle(session: smtp_fsm.ClientSession) -> str:
    event = session.next_event()
    if event is smtp_fsm.NEED_DATA:
        return "feed"
    match event:
        case smtp_fsm.SessionReady() | smtp_fsm.StartTLS() | smtp_fsm.Authenticated():
            return "setup"
        case smtp_fsm.MessageSent(ticket=ticket, result=result):
            return f"{ticket} {result.outcome}"
        case smtp_fsm.CommandDone():
            return "done"
        case smtp_fsm.Closed(error=error):
            return repr(error)
        case _:
            assert_never(event)

def send(session: smtp_fsm.ClientSession) -> int:
    return session.sendmail("a@example.org", ["b@example.org"], b"x", notify=["NEVER"], ret="HDRS")
'''


def _mypy(tmp_path: Path, code: str) -> subprocess.CompletedProcess[str]:
    source = tmp_path / "user_code.py"
    source.write_text(textwrap.dedent(code), encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--cache-dir", str(tmp_path / "cache"),
         str(source)], capture_output=True, text=True, timeout=300, cwd=ROOT, check=False)


def test_mypy_checks_a_match_over_the_events_and_the_send_options(tmp_path: Path) -> None:
    """User code type-checks; dropping one case, or a misspelt option, is a mypy error."""
    fine = _mypy(tmp_path, MATCH_ALL)
    assert fine.returncode == 0, fine.stdout
    missing = MATCH_ALL.replace("        case smtp_fsm.CommandDone():\n            return \"done\"\n", "")
    assert missing != MATCH_ALL
    incomplete = _mypy(tmp_path, missing)
    assert incomplete.returncode == 1 and "CommandDone" in incomplete.stdout, incomplete.stdout
    typo = _mypy(tmp_path, MATCH_ALL.replace("notify=", "notfy="))
    assert typo.returncode == 1 and "notfy" in typo.stdout, typo.stdout


def test_ehlo_name_needs_an_ip_socket() -> None:
    class Unix:
        def getsockname(self) -> str:
            return "/run/smtp.sock"

    with pytest.raises(smtp_fsm.LocalProtocolError, match="needs an IP address"):
        smtp_fsm.ehlo_name(Unix())
    assert smtp_fsm.ehlo_name("127.0.0.1") == "[127.0.0.1]"
