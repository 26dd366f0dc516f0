"""A tiny run of bench/ so the benchmark cannot rot: every client delivers a few messages; nothing is timed."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest
from conftest import require_tool

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")
sys.path.insert(0, BENCH)

import clients  # noqa: E402  (bench/ holds scripts, not a package)
import engine  # noqa: E402
import run  # noqa: E402
import sinks  # noqa: E402

N = 5


@pytest.fixture(scope="module")
def pysink() -> Iterator[sinks.Server]:
    with sinks.start("pysink", pinned=False) as server:
        yield server


@pytest.mark.parametrize("name", sorted(clients.PYTHON_CLIENTS))
@pytest.mark.parametrize("body", [1024, 100 * 1024])
def test_python_client_delivers_to_python_sink(pysink: sinks.Server, name: str, body: int) -> None:
    pysink.drain()
    outcome = clients.run_here(name, pysink.port, N, body, count=False)
    stats = pysink.next_conn()
    assert outcome.error == ""
    assert outcome.delivered == N
    assert stats is not None
    assert stats.messages == N
    assert stats.content_bytes == N * (body + clients.SMTP_SOURCE_HEADER_BYTES)


def test_counting_pass_counts_reads_and_writes(pysink: sinks.Server) -> None:
    pysink.drain()
    outcome = clients.run_client("smtplib", pysink.port, N, 1024, prefix=[], count=True)
    stats = pysink.next_conn()
    assert outcome.delivered == N and stats is not None and stats.messages == N
    assert outcome.reads >= 4 * N and outcome.writes >= 4 * N  # smtplib waits for every reply
    assert stats.tx_sends == 4 * N


def test_smtp_source_and_smtp_fsm_deliver_to_smtp_sink() -> None:
    require_tool("smtp-sink", sinks.POSTFIX_HINT)
    source = require_tool("smtp-source", sinks.POSTFIX_HINT)
    with sinks.start("smtp-sink", pinned=False) as server:
        assert clients.run_client("smtp-source", server.port, N, 1024, prefix=[], smtp_source=source).delivered == N
        for name in ("fsm-many", "fsm-each", "fsm-async", "smtplib", "aiosmtplib"):
            outcome = clients.run_here(name, server.port, N, 1024, count=False)
            assert (outcome.error, outcome.delivered) == ("", N), name


def test_smtp_source_sends_the_same_size_as_the_python_clients(pysink: sinks.Server) -> None:
    source = require_tool("smtp-source", sinks.POSTFIX_HINT)
    pysink.drain()
    assert clients.run_client("smtp-source", pysink.port, N, 1024, prefix=[], smtp_source=source).delivered == N
    stats = pysink.next_conn()
    assert stats is not None and stats.messages == N
    # smtp-source's headers grow with its counters by a few octets; the clients match it within 1 %.
    assert abs(stats.content_bytes / N - (1024 + clients.SMTP_SOURCE_HEADER_BYTES)) < 12


def test_aiosmtpd_sink_counts_messages() -> None:
    with sinks.start("aiosmtpd", pinned=False) as server:
        server.drain()
        outcome = clients.run_here("fsm-many", server.port, N, 1024, count=False)
        stats = server.next_conn()
        assert outcome.delivered == N and stats is not None and stats.messages == N


def test_engine_alone_and_closed_engines_are_released() -> None:
    timing = engine.per_message(20, 1024, 1)
    assert timing["us_per_message"] > 0
    memory = engine.memory(50)
    assert memory["models_after_close"] == 0
    assert memory["alive_after_close_and_gc"] == 0


def test_run_prints_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    status = run.main(["--messages", "3", "--reps", "1", "--no-pin", "--no-engine", "--only", "fsm-many,smtplib",
                       "--servers", "pysink"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "| fsm-many |" in out and "| smtplib |" in out and "failed" not in out


def test_window_pool_and_concurrency_benchmarks_print_their_tables(capsys: pytest.CaptureFixture[str]) -> None:
    """bench/window.py, pool.py and concurrency.py, tiny: every client delivers (they exit otherwise)."""
    require_tool("smtp-sink", sinks.POSTFIX_HINT)
    require_tool("smtp-source", sinks.POSTFIX_HINT)
    import concurrency  # (bench/ scripts)
    import pool
    import window

    window.main(["--messages", "20", "--reps", "1"])
    pool.main(["--messages", "20", "--reps", "1", "--connections", "2"])
    concurrency.main(["--messages", "20", "--reps", "1", "--connections", "1", "5"])
    printed = capsys.readouterr().out
    for row in ("send_many, bdat_window=16", "smtp-source (DATA) to smtp-sink", "AsyncSMTPPool, N=2",
                "SMTPPool, N=2", "aiosmtplib, N=2", "smtp-source -s N, N=2", "1", "5"):
        assert f"| {row} |" in printed, row
    assert "CPU per message, 5 connections / 1:" in printed


def test_tls_benchmark_sends_over_implicit_tls_and_plain(capsys: pytest.CaptureFixture[str]) -> None:
    """bench/tls.py, tiny: both clients deliver to the Python sink plain and behind TLS (it exits otherwise)."""
    import tls  # (bench/ script)

    tls.main(["--messages", "3", "--reps", "1"])
    printed = capsys.readouterr().out
    for row in ("smtp_fsm send_many, plain", "smtplib sendmail, plain", "smtp_fsm send_many, TLS",
                "smtplib sendmail, TLS"):
        assert f"| {row} |" in printed, row
