"""What a test author sees: the plugin's failures, run in a separate pytest as a user's project would."""

from __future__ import annotations

import pytest

USER_TESTS = r'''
from email.message import EmailMessage

import pytest

from smtp_fsm import SMTPClient, SMTPError
from smtp_fsm.testing import SessionStepper, replay

TRANSCRIPT = """
S: 220 mx.example ESMTP
C: EHLO client.example
S: 250-mx.example
S: 250 PIPELINING
C: MAIL FROM:<shop@example.org>
C: RCPT TO:<carol@example.net>
C: DATA
S: 250 sender ok
S: 250 recipient ok
S: 354 go ahead
C: From: shop@example.org
C: To: carol@example.net
C: Subject: hi
C:
C: hello
C: .
S: 250 2.0.0 queued
C: QUIT
S: 221 bye
"""


def send(host, port, to):
    with SMTPClient(host, port, local_hostname="client.example") as smtp:
        return smtp.sendmail("shop@example.org", [to],
                             f"From: shop@example.org\r\nTo: {to}\r\nSubject: hi\r\n\r\nhello\r\n")


def test_follows(scripted_smtp_server):
    server = scripted_smtp_server(TRANSCRIPT)
    assert send(server.host, server.port, "carol@example.net").ok


def test_deviates(scripted_smtp_server):
    server = scripted_smtp_server(TRANSCRIPT)
    send(server.host, server.port, "bob@example.net")


def test_swallowed(scripted_smtp_server):
    server = scripted_smtp_server(TRANSCRIPT)
    try:
        send(server.host, server.port, "bob@example.net")
    except SMTPError:
        pass


def test_unchecked(scripted_smtp_server):
    server = scripted_smtp_server(TRANSCRIPT, check=False)
    with pytest.raises(SMTPError):
        send(server.host, server.port, "bob@example.net")
    assert len(server.failures) == 1


def test_replay_mismatch():
    def work(session):
        session.sendmail("shop@example.org", ["bob@example.net"],
                         b"From: shop@example.org\r\nTo: carol@example.net\r\nSubject: hi\r\n\r\nhello\r\n")
        session.quit()

    replay(TRANSCRIPT, work=work, local_hostname="client.example")


@pytest.mark.xfail(reason="the client is known to deviate")
def test_xfail_deviates(scripted_smtp_server):
    server = scripted_smtp_server(TRANSCRIPT)
    try:
        send(server.host, server.port, "bob@example.net")
    except SMTPError:
        pass


def test_connects_and_leaves(scripted_smtp_server):
    import socket

    server = scripted_smtp_server(TRANSCRIPT)
    socket.create_connection((server.host, server.port)).close()


def test_never_connects(scripted_smtp_server):
    scripted_smtp_server(TRANSCRIPT)


def test_deviates_and_fails_by_itself(scripted_smtp_server):
    server = scripted_smtp_server(TRANSCRIPT)
    try:
        send(server.host, server.port, "bob@example.net")
    except SMTPError:
        pass
    assert {"a": 1, "b": 2} == {"a": 1, "b": 3}


def test_stepper_expectation():
    step = SessionStepper(transcript=TRANSCRIPT, local_hostname="client.example")
    step.session.sendmail("shop@example.org", ["carol@example.net"],
                          b"From: shop@example.org\r\nTo: carol@example.net\r\nSubject: hi\r\n\r\nhello\r\n")
    step.next()
    step.expect(state="ehlo", wrote=b"EHLO client.example\r\n")
    step.next()
    step.expect(state="rcpt", rows=["250, PIPELINING"])
'''


@pytest.fixture
def user_project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_user=USER_TESTS)
    return pytester


def test_each_failure_is_one_failure_at_the_tests_own_line(user_project: pytest.Pytester) -> None:
    result = user_project.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    # (no teardown error repeats a failure; the xfail test's deviation is the failure it expected)
    result.assert_outcomes(passed=2, failed=7, xfailed=1, errors=0)
    out = result.stdout.str()
    deviates = _section(out, "test_deviates")
    assert "the client deviated from the transcript: it wrote something else at line 7 (connection 1)" in deviates
    assert "expected: b'RCPT TO:<carol@example.net>\\r\\nDATA\\r\\n'" in deviates
    assert "wrote:    b'RCPT TO:<bob@example.net>\\r\\nDATA\\r\\n'" in deviates
    assert ">    7 | C: RCPT TO:<carol@example.net>" in deviates and "6 | C: MAIL FROM:<shop@example.org>" in deviates
    assert "test_user.py:44: in test_deviates\n    send(server.host, server.port, \"bob@example.net\")" in deviates
    assert "test_user.py:33: in send\n    return smtp.sendmail(" in deviates
    assert "then the test raised ServerDisconnected" in deviates
    swallowed = _section(out, "test_swallowed")
    assert "was caught by the code under test" in swallowed and "at line 7" in swallowed
    replayed = _section(out, "test_replay_mismatch")
    assert "transcript line 7" in replayed and ">    7 | C: RCPT TO:<carol@example.net>" in replayed
    assert "checking.py" not in replayed and "replaying.py" not in replayed  # library frames hidden
    assert "it closed the connection early at line 3" in _section(out, "test_connects_and_leaves")
    assert "it never connected (connection 1)" in _section(out, "test_never_connects")
    by_itself = _section(out, "test_deviates_and_fails_by_itself")
    assert "at line 7" in by_itself and "The test also failed by itself (AssertionError):" in by_itself
    assert "Differing items" in by_itself or "{'b': 2} != {'b': 3}" in by_itself  # pytest's own explanation
    stepped = _section(out, "test_stepper_expectation")
    assert "the last step did not go as expected:" in stepped
    assert "state: expected 'rcpt', got 'data'" in stepped and "rows: expected ['250, PIPELINING']" in stepped
    assert "stepping.py" not in stepped
    print(deviates, swallowed, replayed, stepped, sep="\n----\n")  # (shown with -s: the notes quote them)


def _section(out: str, test: str) -> str:
    """The failure section of one test in pytest's output."""
    start = out.index(f"_ {test} _")
    end = out.find("\n_____", start + 1)
    summary = out.find("short test summary", start)
    ends = [i for i in (end, summary) if i != -1]
    return out[start : min(ends)]


def test_the_fixtures_work_under_xdist_without_port_races(pytester: pytest.Pytester) -> None:
    """Workers start servers at the same moment: each binds its own socket, none races for a port."""
    pytester.makepyfile(test_parallel='''
import pytest
from smtp_fsm import SMTPClient
from smtp_fsm.testing.esmtp import ESMTPServer

@pytest.mark.parametrize("n", range(24))
def test_servers(n, smtp_server, smtp_server_factory, scripted_smtp_server):
    lmtp = smtp_server_factory(lmtp=True)
    scripted = scripted_smtp_server("S: 220 hi\\nC: EHLO client.example\\nS: 250 hi\\nC: QUIT\\nS: 221 bye\\n")
    with SMTPClient(smtp_server.host, smtp_server.port, local_hostname="client.example") as smtp:
        assert smtp.sendmail("a@example.org", ["b@example.org"], f"Subject: {n}\\r\\n\\r\\nx\\r\\n").ok
    with SMTPClient(lmtp.host, lmtp.port, lmtp=True, local_hostname="client.example") as smtp:
        assert smtp.sendmail("a@example.org", ["b@example.org"], b"x\\r\\n").ok
    with SMTPClient(scripted.host, scripted.port, local_hostname="client.example"):
        pass
    with ESMTPServer() as esmtp, SMTPClient(esmtp.host, esmtp.port, local_hostname="client.example") as smtp:
        assert smtp.sendmail("a@example.org", ["b@example.org"], b"x\\r\\n").ok
    assert len({smtp_server.port, lmtp.port, scripted.port}) == 3
''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", "-n", "4")
    result.assert_outcomes(passed=24, failed=0, errors=0)
