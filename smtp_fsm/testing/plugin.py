"""pytest plugin (entry point ``pytest11``): fixtures with real and scripted SMTP servers on 127.0.0.1.

pytest loads this module in every run of every project that has smtp_fsm installed, so it
imports nothing but pytest until a fixture is used: the servers (aiosmtpd), the scripted
server and trustme load then, and a missing extra fails that test with the line to install
it (an error, never a skip that would hide a broken setup).  ``-p no:smtp_fsm`` turns it off.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

# The toolkit's helpers raise AssertionErrors with their own messages; a plain assert in them is
# explained as pytest explains a test's own.  (Registered before those modules load, as it must be.)
pytest.register_assert_rewrite("smtp_fsm.testing.checking", "smtp_fsm.testing.stepping",
                               "smtp_fsm.testing.replaying", "smtp_fsm.testing.scripted")

if TYPE_CHECKING:

    from ..transcript import Transcript
    from .certificates import TLSCertificates
    from .scripted import Behaviour, Deviation, ScriptedSMTPServer
    from .servers import LocalSMTPServer


@pytest.fixture
def smtp_server() -> Iterator[LocalSMTPServer]:
    """A real aiosmtpd server on 127.0.0.1 (free port) that keeps every message with its envelope."""
    from .servers import LocalSMTPServer

    with LocalSMTPServer() as server:
        yield server


@pytest.fixture
def smtp_server_factory() -> Iterator[Callable[..., LocalSMTPServer]]:
    """Make servers with options (TLS, AUTH, SMTPUTF8, LMTP, PIPELINING...); all stopped at teardown."""
    from .servers import LocalSMTPServer

    started: list[LocalSMTPServer] = []

    def make(**options: Any) -> LocalSMTPServer:
        server = LocalSMTPServer(**options).start()
        started.append(server)
        return server

    yield make
    for server in reversed(started):
        server.stop()


#: The scripted servers each test made (with ``check``), for the report hook below.
_SCRIPTED = pytest.StashKey[list["ScriptedSMTPServer"]]()
#: How many of each server's deviations were already reported (as the test's failure).
_REPORTED = pytest.StashKey[dict[int, int]]()


@pytest.fixture
def scripted_smtp_server(request: pytest.FixtureRequest) -> Iterator[Callable[..., ScriptedSMTPServer]]:
    """Make servers that play a transcript (``S:``/``C:`` text) and fail the test if the client deviates.

    ``scripted_smtp_server(transcript, *behaviours, check=True, timeout=10.0)``
    returns a started server (``.host``, ``.port``).  A deviation fails the test
    once, as the test's own failure: the transcript line, what it expected, what
    the client wrote and the lines around it -- even when the code under test caught
    the error it got.  Servers made with ``check=False`` are only stopped; look at
    their ``failures`` yourself.
    """
    from .scripted import ScriptedSMTPServer

    checked = request.node.stash.setdefault(_SCRIPTED, [])
    started: list[ScriptedSMTPServer] = []

    def make(transcript: Transcript | str, *behaviours: Behaviour, check: bool = True,
             **options: Any) -> ScriptedSMTPServer:
        server = ScriptedSMTPServer(transcript, *behaviours, **options).start()
        started.append(server)
        if check:
            checked.append(server)
        return server

    yield make
    for server in reversed(started):
        server.stop()
    # What the test's report did not show yet (a deviation after the test body, in another
    # fixture's teardown): an error of this teardown, never the same deviation twice.
    unreported = _unreported(request.node)
    if unreported:
        # pytrace=False: the failure is the client's; this fixture's frames would only hide it
        pytest.fail("\n".join(server.report(deviations) for server, deviations in unreported), pytrace=False)


def _unreported(item: pytest.Item) -> list[tuple[ScriptedSMTPServer, list[Deviation]]]:
    """Each checked server's deviations not reported yet, now marked reported."""
    reported = item.stash.setdefault(_REPORTED, {})
    found = []
    for server in item.stash.get(_SCRIPTED, []):
        seen = reported.get(id(server), 0)
        if len(server.deviations) > seen:
            found.append((server, list(server.deviations[seen:])))
            reported[id(server)] = len(server.deviations)
    return found


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                               call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A scripted server's deviations become the test's own failure, once (see ``scripted_smtp_server``)."""
    report = yield
    if call.when != "call" or _SCRIPTED not in item.stash:
        return report
    for server in item.stash[_SCRIPTED]:
        server.settle()  # a client that just closed early (or just connected) is noticed now
        server.check_connected()  # a server nobody (or too few) connected to is a deviation too
    unreported = _unreported(item)
    if not unreported:
        return report
    if hasattr(report, "wasxfail"):
        # An xfail test: the deviation is the failure it expected (an xpass becomes xfailed).
        if report.passed:
            report.outcome = "skipped"
        return report
    original = report.longrepr if report.failed else None
    report.outcome = "failed"
    report.longrepr = _deviation_report(item, call, unreported, original)
    return report


def _deviation_report(item: pytest.Item, call: pytest.CallInfo[None],
                      unreported: list[tuple[ScriptedSMTPServer, list[Deviation]]], original: object) -> str:
    """The failure as the test author needs it: where in the test, what the transcript expected, what came."""
    from ..errors import SMTPError

    lines = [server.report(deviations) for server, deviations in unreported]
    lines.append(_test_line(item, call))
    excinfo = call.excinfo
    if excinfo is None:
        lines.append("  (the test passed: any error the client got was caught by the code under test)")
    elif isinstance(excinfo.value, SMTPError):  # the client's error, which the deviation explains
        message = str(excinfo.value).splitlines()[0] if str(excinfo.value) else ""
        lines.append(f"  -> then the test raised {excinfo.typename}: {message}")
    elif original is not None:  # a failure of its own besides: shown whole, as pytest would
        lines += ["", f"The test also failed by itself ({excinfo.typename}):", str(original)]
    return "\n".join(lines)


def _test_line(item: pytest.Item, call: pytest.CallInfo[None]) -> str:
    """The test's own lines that were running (the frames in the test's file, outermost first: the test
    function, then its helpers), or where the test is defined when it raised nothing."""
    path = getattr(item, "path", None)
    if call.excinfo is not None and path is not None:
        own = [f"{path.name}:{entry.lineno + 1}: in {entry.name}\n    {str(entry.statement).strip()}"
               for entry in call.excinfo.traceback if entry.path == path]
        if own:
            return "\n".join(own)
    location = item.location
    return f"{location[0]}:{(location[1] or 0) + 1}: {item.name}"


@pytest.fixture(scope="session")
def _smtp_fsm_ca() -> Any:
    from .._extras import require

    return require("trustme", "testing", "the tls_certificates fixture").CA()


@pytest.fixture
def tls_certificates(_smtp_fsm_ca: Any) -> TLSCertificates:
    """Server and client SSLContexts that trust each other (``make_test_tls``; one CA per session,
    fresh contexts per test)."""
    from .certificates import make_test_tls

    return make_test_tls(ca=_smtp_fsm_ca)
