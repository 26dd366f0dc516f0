"""examples/queue_worker.py for real: a Redis server, two Dramatiq worker processes each with its pool, a
local SMTP server; one worker is killed mid-batch.  No message is lost, none is stored twice."""

from __future__ import annotations

import asyncio
import importlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from conftest import require_tool

from smtp_fsm.testing.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
COUNT = 300
BOUND = 90.0  # seconds: every wait below ends by then
HEARTBEAT_MS = 1500


class SlowSink:
    """Stores each message's recipients, then takes a moment to answer: a batch is in flight for a while,
    so the kill lands while messages are on the wire."""

    def __init__(self) -> None:
        self.stored: Counter[str] = Counter()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        for rcpt in envelope.rcpt_tos:
            self.stored[rcpt] += 1
        await asyncio.sleep(0.02)
        return "250 2.0.0 stored"


@pytest.fixture
def redis_url() -> Iterator[str]:
    server = require_tool("redis-server", "Debian package redis-server")
    port = free_port()
    process = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                                "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError("redis-server did not start")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


def start_worker(environment: dict[str, str]) -> subprocess.Popen[bytes]:
    """``dramatiq queue_worker --path examples``: one process with its threads and one pool, in a
    process group of its own (so that killing it kills Dramatiq's parent and its child at once)."""
    return subprocess.Popen([sys.executable, "-m", "dramatiq", "queue_worker", "--path", str(ROOT / "examples"),
                             "--processes", "1", "--threads", "8"], env=environment, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_for(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + BOUND
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_a_worker_killed_mid_batch_loses_nothing_and_sends_nothing_twice(redis_url: str,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    sink = SlowSink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings = {"SMTP_FSM_REDIS": redis_url, "SMTP_FSM_SMTP": f"127.0.0.1:{controller.port}",
                "SMTP_FSM_HEARTBEAT_MS": str(HEARTBEAT_MS), "SMTP_FSM_MAINTENANCE_CHANCE": "1000000"}
    environment = {**os.environ, **settings}
    for name, value in settings.items():
        monkeypatch.setenv(name, value)  # (this process queues the messages and reads the results)
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    monkeypatch.delitem(sys.modules, "queue_worker", raising=False)  # (imported afresh, with these settings)
    try:
        queue_worker = importlib.import_module("queue_worker")

        keys = [f"m{n}" for n in range(COUNT)]
        for n, key in enumerate(keys):
            queue_worker.send_mail.send(key, "app@example.org", [f"user{n}@example.net"],
                                        f"Subject: {key}\r\n\r\nhello {n}\r\n")
        doomed, survivor = start_worker(environment), start_worker(environment)
        try:
            wait_for(lambda: len(queue_worker.results(keys)) >= 40, "the first results")
            os.killpg(doomed.pid, signal.SIGKILL)  # mid-batch: its threads hold messages on the wire
            doomed.wait(10)
            killed_at = len(queue_worker.results(keys))
            wait_for(lambda: len(queue_worker.results(keys)) == COUNT, "every message's result")
        finally:
            for worker in (doomed, survivor):
                if worker.poll() is None:
                    os.killpg(worker.pid, signal.SIGTERM)
                    worker.wait(30)
        results = queue_worker.results(keys)
    finally:
        controller.stop()
        sys.modules.pop("queue_worker", None)
    outcomes = Counter(str(result["outcome"]) for result in results.values())
    assert killed_at < COUNT  # (the kill came mid-batch)
    for n, key in enumerate(keys):
        rcpt, outcome = f"user{n}@example.net", results[key]["outcome"]
        if outcome == "delivered":
            assert sink.stored[rcpt] == 1, key
        else:
            assert outcome == "uncertain" and sink.stored[rcpt] <= 1, (key, outcome)
    assert max(sink.stored.values()) == 1  # nothing stored twice
    assert outcomes["uncertain"] > 0  # the dead worker's messages in flight were found, not sent again
    print(f"\nqueue run: {dict(outcomes)}, {killed_at} results when the worker was killed, "
          f"{sum(sink.stored.values())} stored")
