"""Benchmark servers on 127.0.0.1: Postfix smtp-sink, a bytes.find Python sink, and an aiosmtpd sink.

Each server runs in its own process (so it can be pinned with ``taskset`` and
its CPU never counts as the client's), on a free port, for a bounded time.
The two Python sinks print one ``CONN`` line per finished connection with
what they saw, so the benchmark can check that every message arrived and
count the round trips from the server's side: a server write that carries
a transaction reply is one round trip the client waited for.

Run directly, this module *is* the Python sink (``python bench/sinks.py
pysink --port P``; ``pysink-bdat``: the same offering CHUNKING; ``pysink-tls``: the same
behind implicit TLS, ``--cert`` and ``--key`` PEM files) or the aiosmtpd sink
(``... aiosmtpd --port P``).
"""

from __future__ import annotations

import argparse
import os
import queue
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

HOST = "127.0.0.1"
SMTP_SINK = "smtp-sink"
#: A sink process never outlives this, whatever happens to the benchmark.
MAX_SERVER_SECONDS = 1800.0
#: Python sink: per-connection idle limit.
IDLE_SECONDS = 30.0

POSTFIX_HINT = (
    'echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; '
    "DEBIAN_FRONTEND=noninteractive apt-get install -y postfix"
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def find_tool(name: str) -> str | None:
    """Postfix installs its test programs in /usr/sbin, often not on a user's PATH."""
    path = shutil.which(name)
    if path is None and os.path.exists(f"/usr/sbin/{name}"):
        path = f"/usr/sbin/{name}"
    return path


def pin_prefix(pinned: bool, cpu: int = 0) -> list[str]:
    return ["taskset", "-c", str(cpu)] if pinned else []


@dataclass
class ConnStats:
    """What a Python sink saw on one connection."""

    messages: int
    content_bytes: int
    recvs: int
    sends: int
    tx_sends: int  # writes carrying a reply to MAIL, RCPT, DATA or the end of data


@dataclass
class Server:
    """A running sink process; ``stop()`` ends it (also on context exit)."""

    kind: str
    port: int
    proc: subprocess.Popen[bytes]
    lines: queue.Queue[str] = field(default_factory=queue.Queue)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def next_conn(self, timeout: float = 5.0) -> ConnStats | None:
        """The stats of the next finished connection (Python sinks only; None for smtp-sink or on timeout)."""
        if self.kind == "smtp-sink":
            return None
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                return None
            if line.startswith("CONN "):
                values = dict(part.split("=", 1) for part in line.split()[1:])
                return ConnStats(int(values["messages"]), int(values["bytes"]), int(values["recvs"]),
                                 int(values["sends"]), int(values["tx_sends"]))
        return None

    def drain(self) -> None:
        while not self.lines.empty():
            self.lines.get_nowait()


def _pump_lines(stream: Any, lines: queue.Queue[str]) -> None:
    for raw in iter(stream.readline, b""):
        lines.put(raw.decode("utf-8", "replace").strip())


def _wait_listening(port: int, proc: subprocess.Popen[bytes], seconds: float = 10.0,
                    tls: ssl.SSLContext | None = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early with status {proc.returncode}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5) as plain:
                probe = tls.wrap_socket(plain, server_hostname=HOST) if tls is not None else plain
                probe.recv(512)  # the greeting: the server really is serving
                probe.sendall(b"QUIT\r\n")
                probe.recv(512)
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not start within {seconds} s")


def start(kind: str, *, pinned: bool, cpu: int = 0, tls: tuple[str, str, ssl.SSLContext] | None = None) -> Server:
    """Start ``smtp-sink``, ``pysink``, ``pysink-bdat`` (the Python sink offering CHUNKING), ``pysink-tls``
    (behind implicit TLS: ``tls`` gives the certificate and key files, and a client context that trusts
    them) or ``aiosmtpd`` on a free port and wait until it greets."""
    port = free_port()
    if kind == "smtp-sink":
        tool = find_tool(SMTP_SINK)
        if tool is None:
            raise RuntimeError(f"smtp-sink is not installed; install Postfix's test tools with: {POSTFIX_HINT}")
        # -u nobody: smtp-sink refuses to run as root without dropping privileges.
        # -t bounds each read; timeout(1) bounds the process.
        argv = ["timeout", str(int(MAX_SERVER_SECONDS)), tool, "-u", "nobody", "-t", "30", f"{HOST}:{port}", "256"]
    elif kind in ("pysink", "pysink-bdat", "aiosmtpd"):
        argv = [sys.executable, os.path.abspath(__file__), kind, "--port", str(port)]
    elif kind == "pysink-tls":
        if tls is None:
            raise ValueError("pysink-tls needs tls=(certificate file, key file, client context)")
        argv = [sys.executable, os.path.abspath(__file__), kind, "--port", str(port), "--cert", tls[0], "--key", tls[1]]
    else:
        raise ValueError(f"unknown server {kind!r}")
    proc = subprocess.Popen(pin_prefix(pinned, cpu) + argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL)
    server = Server(kind, port, proc)
    assert proc.stdout is not None
    threading.Thread(target=_pump_lines, args=(proc.stdout, server.lines), daemon=True).start()
    try:
        _wait_listening(port, proc, tls=tls[2] if tls is not None else None)
    except BaseException:
        server.stop()
        raise
    server.next_conn(timeout=1.0)  # the probe's own connection
    return server


# --- the Python sink (runs in the child process) ------------------------------------

_EHLO_REPLY = (
    b"250-pysink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250 DSN\r\n"
)


def _serve_pysink(conn: socket.socket, chunking: bool = False) -> None:
    """One connection: commands line by line, the content located with ``bytearray.find`` (after DATA)
    or by its size (BDAT, offered with ``chunking``)."""
    conn.settimeout(IDLE_SECONDS)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = bytearray()
    in_data = False
    scan_from = 0  # where the search for the end of data resumes
    data_start = 0
    messages = content_bytes = recvs = sends = tx_sends = 0
    chunk_left, chunk_last = 0, False  # BDAT: octets of the chunk still to come, and whether it ends
    ehlo_reply = _EHLO_REPLY.replace(b"250 DSN", b"250-DSN\r\n250 CHUNKING") if chunking else _EHLO_REPLY
    conn.sendall(b"220 pysink ESMTP\r\n")
    sends += 1
    open_ = True
    while open_:
        try:
            chunk = conn.recv(262144)
        except OSError:
            break
        recvs += 1
        if not chunk:
            break
        buf += chunk
        out: list[bytes] = []
        tx = False
        pos = 0
        while True:
            if chunk_left:
                take = min(chunk_left, len(buf) - pos)
                pos += take
                chunk_left -= take
                content_bytes += take
                if chunk_left:
                    break
                out.append(b"250 2.0.0 Ok: queued\r\n" if chunk_last else b"250 2.0.0 Ok\r\n")
                messages += chunk_last
                tx = True
                continue
            if in_data:
                end = buf.find(b"\r\n.\r\n", scan_from)
                if end < 0:
                    scan_from = max(data_start - 2, len(buf) - 4)
                    break
                messages += 1
                content_bytes += end + 2 - data_start
                out.append(b"250 2.0.0 Ok: queued\r\n")
                tx = True
                in_data = False
                pos = end + 5
                continue
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                break
            verb = bytes(buf[pos : pos + 4]).upper()
            line_start = pos
            pos = eol + 2
            if verb == b"MAIL":
                out.append(b"250 2.1.0 Ok\r\n")
                tx = True
            elif verb == b"RCPT":
                out.append(b"250 2.1.5 Ok\r\n")
                tx = True
            elif verb == b"DATA":
                out.append(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                tx = True
                in_data = True
                data_start = pos
                scan_from = pos - 2  # the DATA line's CRLF starts a "\r\n.\r\n" for empty content
            elif verb == b"BDAT" and chunking:
                words = bytes(buf[line_start:eol]).split()
                chunk_left, chunk_last = int(words[1]), len(words) > 2
                tx = True
                if not chunk_left:
                    out.append(b"250 2.0.0 Ok: queued\r\n" if chunk_last else b"250 2.0.0 Ok\r\n")
                    messages += chunk_last
            elif verb in (b"EHLO", b"LHLO"):
                out.append(ehlo_reply)
            elif verb == b"QUIT":
                out.append(b"221 2.0.0 Bye\r\n")
                open_ = False
                break
            elif verb in (b"HELO", b"RSET", b"NOOP"):
                out.append(b"250 2.0.0 Ok\r\n")
            else:
                out.append(b"502 5.5.2 Error: command not recognized\r\n")
        if pos:
            del buf[:pos]
            if in_data:
                data_start -= pos
                scan_from = max(scan_from - pos, 0)
        if out:
            try:
                conn.sendall(b"".join(out))
            except OSError:
                break
            sends += 1
            tx_sends += tx
    conn.close()
    print(f"CONN messages={messages} bytes={content_bytes} recvs={recvs} sends={sends} tx_sends={tx_sends}",
          flush=True)


def run_pysink(port: int, seconds: float, chunking: bool = False, tls: ssl.SSLContext | None = None) -> None:
    deadline = time.monotonic() + seconds
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, port))
        listener.listen(16)
        listener.settimeout(1.0)
        while time.monotonic() < deadline:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            if tls is not None:
                try:
                    conn.settimeout(IDLE_SECONDS)
                    conn = tls.wrap_socket(conn, server_side=True)
                except OSError:
                    conn.close()
                    continue
            _serve_pysink(conn, chunking)  # one connection at a time: the benchmark runs one client at a time


# --- the aiosmtpd sink (runs in the child process) ------------------------------------

class _AioSinkHandler:
    """Counts messages; adds PIPELINING (aiosmtpd reads commands line by line, so it is safe)."""

    def __init__(self) -> None:
        self.messages = 0
        self.content_bytes = 0

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        return [responses[0], "250-PIPELINING", *responses[1:]]

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages += 1
        self.content_bytes += len(envelope.original_content or b"")
        return "250 2.0.0 Ok: queued"

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        # Round trips are not visible from here; report only what arrived.
        print(f"CONN messages={self.messages} bytes={self.content_bytes} recvs=0 sends=0 tx_sends=0", flush=True)
        self.messages = self.content_bytes = 0
        return "221 Bye"


def run_aiosmtpd(port: int, seconds: float) -> None:
    import asyncio

    from aiosmtpd.smtp import SMTP

    async def main() -> None:
        handler = _AioSinkHandler()
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: SMTP(handler, hostname="aiosink"), HOST, port)
        async with server:
            await asyncio.sleep(seconds)

    asyncio.run(main())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("kind", choices=("pysink", "pysink-bdat", "pysink-tls", "aiosmtpd"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=MAX_SERVER_SECONDS)
    parser.add_argument("--cert", help="pysink-tls: the certificate chain (PEM)")
    parser.add_argument("--key", help="pysink-tls: its private key (PEM)")
    args = parser.parse_args(argv)
    if args.kind == "pysink-tls":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.cert, args.key)
        run_pysink(args.port, args.seconds, tls=context)
    elif args.kind in ("pysink", "pysink-bdat"):
        run_pysink(args.port, args.seconds, chunking=args.kind == "pysink-bdat")
    else:
        run_aiosmtpd(args.port, args.seconds)


if __name__ == "__main__":
    main()
