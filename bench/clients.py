"""Benchmark clients: N messages over ONE connection, one recipient each, timed from connect to QUIT.

Every Python client runs in its own process (``python bench/clients.py
--client NAME ...``, re-executed under ``taskset`` when pinned) and prints
one JSON line: messages the server accepted, wall and CPU seconds, and, with
``--count``, the socket reads and writes it made.  Counting wraps the socket
class, which costs a little CPU, so the timed runs never count and a
separate, untimed pass does.  Postfix's ``smtp-source`` runs as a plain
subprocess; its CPU comes from ``wait4``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

HOST = "127.0.0.1"
SENDER = "bench@example.com"
RECIPIENT = "sink@example.com"
HELO_NAME = "bench.local"
#: smtp-source -l L sends L bytes of body plus this many bytes of its own headers
#: (measured with the Python sink); the Python clients send the same total.
SMTP_SOURCE_HEADER_BYTES = 135
CLIENT_SECONDS = 600.0

_QUICKACK = getattr(socket, "TCP_QUICKACK", None)


@dataclass
class Outcome:
    client: str
    delivered: int
    wall: float
    cpu: float  # user + system seconds of the client process
    reads: int = -1  # -1: not counted
    writes: int = -1
    error: str = ""


def cpu_model() -> str:
    """The processor's name: machines of one kind have come with different ones, and the ratios to the
    C client move with it (a round trip's cost), so a table names it."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "processor unknown"


def build_message(body_length: int) -> bytes:
    """A CRLF message of ``body_length + SMTP_SOURCE_HEADER_BYTES`` octets, as large as smtp-source's."""
    header = (
        b"From: <bench@example.com>\r\nTo: <sink@example.com>\r\nSubject: benchmark message\r\n"
        b"Message-Id: <bench.1@bench.local>\r\n\r\n"
    )
    total = body_length + SMTP_SOURCE_HEADER_BYTES
    remaining = total - len(header)
    full, rest = divmod(remaining, 78)  # lines of 76 octets plus CRLF
    if rest == 1:  # a 1-octet line cannot end in CRLF: widen one full line instead
        full, rest = full - 1, 79
    body = (b"x" * 76 + b"\r\n") * full + (b"y" * (rest - 2) + b"\r\n" if rest else b"")
    message = header + body
    assert len(message) == total, (len(message), total)
    return message


# --- counting reads and writes --------------------------------------------------

class _Counts:
    reads = 0
    writes = 0


class CountingSocket(socket.socket):
    """socket.socket that counts the calls that become read and write system calls."""

    def recv(self, *args: Any) -> bytes:
        _Counts.reads += 1
        return super().recv(*args)

    def recv_into(self, *args: Any) -> int:
        _Counts.reads += 1
        return super().recv_into(*args)

    def send(self, *args: Any) -> int:
        _Counts.writes += 1
        return super().send(*args)

    def sendall(self, *args: Any) -> None:
        _Counts.writes += 1
        super().sendall(*args)


def install_counting() -> None:
    # socket.create_connection and asyncio both look the class up on the module at call time.
    socket.socket = CountingSocket  # type: ignore[misc]


# --- the clients -------------------------------------------------------------------

def distinct_items(message: bytes, n: int, recipients: str | list[str] = RECIPIENT) -> list[tuple[str, Any, bytes]]:
    """``n`` send_many items, each with its own copy of ``message``: send_many prepares a content
    shared by consecutive items once (one message to many envelopes), and these benchmarks measure
    distinct messages, as smtplib and aiosmtplib are measured."""
    return [(SENDER, recipients, bytes(bytearray(message))) for _ in range(n)]


def run_fsm_many(port: int, n: int, message: bytes, pipelining: bool = True) -> int:
    from smtp_fsm.sync import SMTPClient

    with SMTPClient(HOST, port, local_hostname=HELO_NAME, timeout=30, pipelining=pipelining) as client:
        results = client.send_many(distinct_items(message, n))
    return sum(result.ok for result in results)


def run_fsm_nopipe(port: int, n: int, message: bytes) -> int:
    return run_fsm_many(port, n, message, pipelining=False)


def run_fsm_each(port: int, n: int, message: bytes) -> int:
    from smtp_fsm.sync import SMTPClient

    delivered = 0
    with SMTPClient(HOST, port, local_hostname=HELO_NAME, timeout=30) as client:
        for _ in range(n):
            delivered += client.sendmail(SENDER, RECIPIENT, message).ok
    return delivered


def run_fsm_async(port: int, n: int, message: bytes) -> int:
    from smtp_fsm.aio import AsyncSMTPClient

    async def main() -> int:
        async with AsyncSMTPClient(HOST, port, local_hostname=HELO_NAME, timeout=30) as client:
            results = await client.send_many(distinct_items(message, n))
        return sum(result.ok for result in results)

    return asyncio.run(main())


def run_fsm_engine(port: int, n: int, message: bytes) -> int:
    """The sans-IO engine with the smallest socket loop that works: no deadlines, no events but MessageSent."""
    from smtp_fsm import NEED_DATA, ClientSession, Closed, MessageSent

    sock = socket.create_connection((HOST, port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    session = ClientSession(local_hostname=HELO_NAME, loopback=True)
    session.send_many(distinct_items(message, n))
    session.quit()
    delivered = 0
    try:
        for _ in range(100 * n + 1000):  # bounded: far more turns than any correct run needs
            out = session.data_to_send()
            if out:
                sock.sendall(out)
            event = session.next_event()
            if event is NEED_DATA:
                if _QUICKACK is not None:
                    sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
                session.receive_data(sock.recv(65536))
            elif isinstance(event, MessageSent):
                delivered += event.result.ok
            elif isinstance(event, Closed):
                break
    finally:
        session.close()
        sock.close()
    return delivered


def run_smtplib(port: int, n: int, message: bytes) -> int:
    import smtplib

    delivered = 0
    with smtplib.SMTP(HOST, port, local_hostname=HELO_NAME, timeout=30) as client:
        for _ in range(n):
            refused = client.sendmail(SENDER, [RECIPIENT], message)
            delivered += not refused
    return delivered


def run_aiosmtplib(port: int, n: int, message: bytes) -> int:
    import aiosmtplib

    async def main() -> int:
        delivered = 0
        client = aiosmtplib.SMTP(hostname=HOST, port=port, local_hostname=HELO_NAME, timeout=30,
                                 use_tls=False, start_tls=False)
        async with client:
            for _ in range(n):
                refused, _ = await client.sendmail(SENDER, [RECIPIENT], message)
                delivered += not refused
        return delivered

    return asyncio.run(main())


PYTHON_CLIENTS: dict[str, Callable[[int, int, bytes], int]] = {
    "fsm-many": run_fsm_many,
    "fsm-each": run_fsm_each,
    "fsm-async": run_fsm_async,
    "fsm-engine": run_fsm_engine,
    "fsm-nopipe": run_fsm_nopipe,
    "smtplib": run_smtplib,
    "aiosmtplib": run_aiosmtplib,
}
DESCRIPTIONS = {
    "fsm-many": "smtp_fsm blocking driver, send_many (pipelined)",
    "fsm-each": "smtp_fsm blocking driver, one sendmail() per message",
    "fsm-async": "smtp_fsm asyncio driver, send_many",
    "fsm-engine": "smtp_fsm sans-IO engine, minimal socket loop",
    "fsm-nopipe": "smtp_fsm blocking send_many, pipelining=False",
    "smtplib": "Python's smtplib, sendmail() per message",
    "aiosmtplib": "aiosmtplib, sendmail() per message",
    "smtp-source": "Postfix smtp-source (C), -d: one connection",
}
ALL_CLIENTS = ("smtp-source", *PYTHON_CLIENTS)


def _preimport(client: str) -> None:
    import smtplib  # noqa: F401

    import smtp_fsm.aio
    import smtp_fsm.sync  # noqa: F401

    if client == "aiosmtplib":
        import aiosmtplib  # noqa: F401


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_here(client: str, port: int, n: int, body_length: int, count: bool) -> Outcome:
    """Run a Python client in this process (the child side of ``run_client``)."""
    message = build_message(body_length)
    if count:
        install_counting()
    _preimport(client)  # imports are not part of what is timed
    func = PYTHON_CLIENTS[client]
    cpu0, wall0 = _cpu(), time.perf_counter()
    try:
        delivered = func(port, n, message)
        error = ""
    except Exception as exc:  # reported, and the parent treats it as a failed run
        delivered, error = 0, f"{type(exc).__name__}: {exc}"
    wall, cpu = time.perf_counter() - wall0, _cpu() - cpu0
    reads, writes = (_Counts.reads, _Counts.writes) if count else (-1, -1)
    return Outcome(client, delivered, wall, cpu, reads, writes, error)


def run_smtp_source(tool: str, port: int, n: int, body_length: int, prefix: list[str]) -> Outcome:
    argv = [*prefix, tool, "-d", "-m", str(n), "-l", str(body_length), "-M", HELO_NAME,
            "-f", SENDER, "-t", RECIPIENT, f"{HOST}:{port}"]
    wall0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + CLIENT_SECONDS
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.0005)
    wall = time.perf_counter() - wall0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
    ok = proc.returncode == 0
    # taskset execs the tool, so the rusage is smtp-source's own.
    return Outcome("smtp-source", n if ok else 0, wall, usage.ru_utime + usage.ru_stime,
                   error="" if ok else f"exit {proc.returncode}: {err[:200]}")


def bench_parser(doc: str | None, messages: int) -> argparse.ArgumentParser:
    """The options every comparison script shares: ``--messages``, ``--reps``, ``--pinned``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    parser.add_argument("--messages", type=int, default=messages)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--pinned", action="store_true", help="sink on CPU 0, clients on CPU 1 (taskset)")
    return parser


def run_script_child(script: str, args: list[str], prefix: list[str]) -> dict[str, float]:
    """Run a bench/ ``script`` in a fresh process (``prefix``: e.g. ``taskset -c 1``) with ``args``,
    bounded in time; what it prints is one JSON object (its measurements)."""
    argv = [*prefix, sys.executable, os.path.abspath(script), *args]
    done = subprocess.run(argv, capture_output=True, timeout=CLIENT_SECONDS, check=True)
    result: dict[str, float] = json.loads(done.stdout)
    return result


def run_client(client: str, port: int, n: int, body_length: int, *, prefix: list[str], count: bool = False,
               smtp_source: str | None = None) -> Outcome:
    """Run one client against ``port`` in a fresh process; ``prefix`` is e.g. ``taskset -c 0``."""
    if client == "smtp-source":
        if smtp_source is None:
            raise RuntimeError("smtp-source is not installed")
        return run_smtp_source(smtp_source, port, n, body_length, prefix)
    argv = [*prefix, sys.executable, os.path.abspath(__file__), "--client", client, "--port", str(port),
            "--messages", str(n), "--body", str(body_length)]
    if count:
        argv.append("--count")
    done = subprocess.run(argv, capture_output=True, timeout=CLIENT_SECONDS, check=False)
    lines = done.stdout.decode().strip().splitlines()
    if done.returncode != 0 or not lines:
        return Outcome(client, 0, 0.0, 0.0, error=f"exit {done.returncode}: {done.stderr.decode()[-400:]}")
    return Outcome(**json.loads(lines[-1]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="run one benchmark client (used by bench/run.py)")
    parser.add_argument("--client", choices=sorted(PYTHON_CLIENTS), required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--messages", type=int, required=True)
    parser.add_argument("--body", type=int, default=1024)
    parser.add_argument("--count", action="store_true", help="count socket reads and writes (untimed pass)")
    args = parser.parse_args(argv)
    outcome = run_here(args.client, args.port, args.messages, args.body, args.count)
    print(json.dumps(asdict(outcome)))


if __name__ == "__main__":
    main()
