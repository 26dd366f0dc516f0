"""`smtp-fsm send` never shows a traceback: random arguments, addresses and headers, in-process.

Driven by hypothesis against a real local aiosmtpd server and against a closed port, with and
without --dry-run.  Whatever the input: the exit code is one of the documented ones, nothing
escapes ``cli.main``, stderr carries no traceback, an error ends with one ``smtp-fsm`` line
saying what went wrong, and a run that exits 0 or 1 really reached the server.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from smtp_fsm import cli
from smtp_fsm.testing import LocalSMTPServer
from smtp_fsm.testing.servers import free_port

EXIT_CODES = {cli.EXIT_OK, cli.EXIT_SOME_REFUSED, cli.EXIT_USAGE, cli.EXIT_CONNECT, cli.EXIT_AUTH,
              cli.EXIT_REFUSED, cli.EXIT_PROTOCOL}

# Text that looks like what people type, and what breaks naive parsers: quotes, brackets, commas,
# '@', spaces, controls, non-ASCII, empty.
ADDRESS_PARTS = ["a", "bob", "b.c", "x@example.org", "用户@例子.广告", "@", "<", ">", "<>", ",", '"', " ", "\\",
                 "\r", "\n", "\x00", "[127.0.0.1]", "[IPv6:::1]", "Postmaster", "é", ".", "-", "xn--", ":", ";"]
good_address = st.sampled_from(["x@example.org", "Name <y@example.net>", '"Doe, J" <j@example.org>', "用户@例子.广告",
                                "<>", "Postmaster"])
any_address = st.lists(st.sampled_from(ADDRESS_PARTS), max_size=6).map("".join)
address = st.one_of(good_address, good_address, good_address, any_address)  # most reach the server
header_text = st.text(st.characters(min_codepoint=0, max_codepoint=0x2FF), max_size=20)


@pytest.fixture(scope="module")
def server() -> Iterator[LocalSMTPServer]:
    with LocalSMTPServer() as running:
        yield running


def run(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")  # --dry-run writes the exact bytes to its buffer
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = cli.main(argv)
    return code, err.getvalue()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sender=address, recipients=st.lists(address, min_size=1, max_size=3),
       subject=st.one_of(st.just("hi"), st.just("你好"), header_text),
       header=st.one_of(st.none(), st.tuples(st.sampled_from(["X-Test", "Reply-To", "Bad Name", "Subject"]),
                                             header_text)),
       target=st.sampled_from(["server", "closed", "dry-run"]),
       quit_after=st.one_of(st.none(), st.none(), st.sampled_from(["connect", "ehlo", "tls", "auth", "mail", "rcpt"])))
def test_send_never_shows_a_traceback(server: LocalSMTPServer, sender: str, recipients: list[str], subject: str,
                                      header: tuple[str, str] | None, target: str, quit_after: str | None) -> None:
    port = server.port if target != "closed" else free_port()
    argv = ["send", "--server", f"127.0.0.1:{port}", "--from", sender, "--subject", subject, "--body", "hi",
            "--timeout", "5"]
    for rcpt in recipients:
        argv += ["--to", rcpt]
    if header is not None:
        argv += ["--header", f"{header[0]}: {header[1]}"]
    if target == "dry-run":
        argv.append("--dry-run")
    if quit_after is not None:
        argv += ["--quit-after", quit_after]
    before = len(server.messages)
    code, err = run(argv)
    event(f"exit {code}")
    assert code in EXIT_CODES, (argv, code, err)
    assert "Traceback" not in err, err
    if code != cli.EXIT_OK:
        last = err.rstrip("\n").rsplit("\n", 1)[-1]
        assert last.startswith("smtp-fsm"), (argv, err)  # one line saying what went wrong, last
    if code in (cli.EXIT_OK, cli.EXIT_SOME_REFUSED) and target == "server":
        # success means the server has it -- unless told to stop before the data
        assert len(server.messages) == before + (quit_after is None)
    if target == "closed":
        assert code in (cli.EXIT_USAGE, cli.EXIT_CONNECT), (argv, code, err)


@pytest.mark.parametrize(("argv", "says"), [
    (["--from", "", "--to", "x@example.org"], "the null sender is --from '<>'"),
    (["--from", "a@b@c", "--to", "x@example.org"], "'@' is not allowed"),
    (["--from", "a@example.org", "--to", "b example.org"], "no '@'"),
    (["--from", "a@example.org", "--to", "bob"], "no '@'"),
    (["--from", "a@example.org", "--to", "c@"], "domain after '@' is empty"),
    (["--from", "a@example.org, b@example.org", "--to", "x@example.org"], "one sender"),
])
def test_bad_addresses_exit_2_before_connecting(argv: list[str], says: str) -> None:
    code, err = run(["send", "--server", f"127.0.0.1:{free_port()}", "--body", "hi", *argv])
    assert code == cli.EXIT_USAGE and says in err and "Traceback" not in err


def test_the_null_sender_is_sent_only_when_named(server: LocalSMTPServer) -> None:
    code, err = run(["send", "--server", f"127.0.0.1:{server.port}", "--from", "<>", "--to", "x@example.org",
                     "--body", "a bounce"])
    assert code == cli.EXIT_OK, err
    assert server.messages[-1].mail_from == "<>"  # how aiosmtpd records MAIL FROM:<>
