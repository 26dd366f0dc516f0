"""The pools (issue 22): N connections to smtp-sink, against smtp-source -s N and aiosmtplib with N clients.

Each client runs in its own process and sends ``--messages`` 1 KiB messages over N connections:
``AsyncSMTPPool`` and ``SMTPPool`` with ``max_connections=N`` (``send_all`` of a generator),
Postfix's ``smtp-source -s N -d`` (N sessions, each kept open), and aiosmtplib with N concurrent
clients each sending its share.  Reported: msgs/s, client CPU µs per message and the client's peak
memory (``ru_maxrss``), medians of ``--reps`` runs with the range; clients alternate, sink on CPU 0,
clients on CPU 1 with ``--pinned``; with ``--same-cpu``, sink and client both on CPU 0, as bench/run.py
pins them (then the sink's work per message counts against the client's throughput too: fewer
round trips per message cost the sink less).  Peak memory includes the interpreter (about 20 MiB); run with
``--messages`` 2000 and 20000 to see it flat in the number of messages (smtp-source's is not
shown).  Every run is bounded in time (clients.CLIENT_SECONDS).

    cd bench && ../.venv/bin/python pool.py --messages 20000 --reps 3 --pinned
    cd bench && ../.venv/bin/python pool.py --messages 20000 --reps 3 --same-cpu
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import time
from collections.abc import Iterator

import clients  # bench/ is a directory of scripts, not a package
import sinks

CONNECTIONS = (1, 4, 16)
BODY = 1024 - clients.SMTP_SOURCE_HEADER_BYTES  # 1 KiB messages, as bench/run.py sends
KINDS = ("AsyncSMTPPool", "SMTPPool", "aiosmtplib")


def items(n: int) -> Iterator[tuple[str, list[str], bytes]]:
    """Each message its own bytes, made as it is read (as clients.distinct_items, in bounded memory)."""
    message = clients.build_message(BODY)
    for _ in range(n):
        yield clients.SENDER, [clients.RECIPIENT], bytes(bytearray(message))


def send_async_pool(port: int, n: int, connections: int) -> int:
    import asyncio

    from smtp_fsm import AsyncSMTPPool

    async def main() -> int:
        async with AsyncSMTPPool(sinks.HOST, port, max_connections=connections, timeout=60,
                                 local_hostname=clients.HELO_NAME) as pool:
            return sum([sent.result.ok async for sent in pool.send_all(items(n))])

    return asyncio.run(main())


def send_thread_pool(port: int, n: int, connections: int) -> int:
    from smtp_fsm import SMTPPool

    with SMTPPool(sinks.HOST, port, max_connections=connections, timeout=60,
                  local_hostname=clients.HELO_NAME) as pool:
        return sum(sent.result.ok for sent in pool.send_all(items(n)))


def send_aiosmtplib(port: int, n: int, connections: int) -> int:
    import asyncio

    import aiosmtplib

    message = clients.build_message(BODY)

    async def one(count: int) -> int:
        delivered = 0
        client = aiosmtplib.SMTP(hostname=sinks.HOST, port=port, local_hostname=clients.HELO_NAME, timeout=60,
                                 use_tls=False, start_tls=False)
        async with client:
            for _ in range(count):
                refused, _ = await client.sendmail(clients.SENDER, [clients.RECIPIENT], message)
                delivered += not refused
        return delivered

    async def main() -> int:
        shares = [n // connections + (k < n % connections) for k in range(connections)]
        return sum(await asyncio.gather(*(one(share) for share in shares)))

    return asyncio.run(main())


SENDERS = {"AsyncSMTPPool": send_async_pool, "SMTPPool": send_thread_pool, "aiosmtplib": send_aiosmtplib}


def run_child(kind: str, port: int, n: int, connections: int) -> dict[str, float]:
    """In the child: send; wall and CPU seconds from the first message (imports excluded), peak memory."""
    if kind == "aiosmtplib":
        import aiosmtplib  # noqa: F401
    import smtp_fsm.pool.aio
    import smtp_fsm.pool.sync  # noqa: F401

    usage0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    delivered = SENDERS[kind](port, n, connections)
    wall, usage = time.perf_counter() - wall0, resource.getrusage(resource.RUSAGE_SELF)
    cpu = (usage.ru_utime - usage0.ru_utime) + (usage.ru_stime - usage0.ru_stime)
    return {"delivered": delivered, "wall": wall, "cpu": cpu, "rss_kib": usage.ru_maxrss}


def run_kind(kind: str, port: int, n: int, connections: int, prefix: list[str]) -> dict[str, float]:
    return clients.run_script_child(__file__, ["--child", kind, "--port", str(port), "--messages", str(n),
                                               "--connections", str(connections)], prefix)


def run_smtp_source(tool: str, port: int, n: int, connections: int, prefix: list[str]) -> dict[str, float]:
    argv = [*prefix, tool, "-d", "-s", str(connections), "-m", str(n), "-l", str(BODY), "-M", clients.HELO_NAME,
            "-f", clients.SENDER, "-t", clients.RECIPIENT, f"{sinks.HOST}:{port}"]
    wall0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - wall0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"smtp-source failed: {proc.stderr.read().decode() if proc.stderr else ''}")
    # (no memory figure: ru_maxrss would be the forked Python's, before the exec)
    return {"delivered": n, "wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss_kib": float("nan")}


def main(argv: list[str] | None = None) -> None:
    parser = clients.bench_parser(__doc__, 20000)
    parser.add_argument("--connections", type=int, nargs="*", default=list(CONNECTIONS))
    parser.add_argument("--same-cpu", action="store_true", help="sink and clients on CPU 0 (as bench/run.py pins)")
    parser.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        (connections,) = args.connections
        print(json.dumps(run_child(args.child, args.port, args.messages, connections)))
        return
    pinned = args.pinned or args.same_cpu
    prefix = sinks.pin_prefix(pinned, 0 if args.same_cpu else 1)
    source = sinks.find_tool("smtp-source")
    rows: dict[str, dict[str, list[float]]] = {}
    n = args.messages
    clients_run = [*KINDS, *(["smtp-source"] if source is not None else [])]
    for rep in range(args.reps):
        order = clients_run[rep % len(clients_run):] + clients_run[:rep % len(clients_run)]  # (they alternate)
        for connections in args.connections:
            with sinks.start("smtp-sink", pinned=pinned, cpu=0) as server:
                runs = {}
                for kind in order:
                    if kind == "smtp-source":
                        assert source is not None
                        runs[f"smtp-source -s N, N={connections}"] = run_smtp_source(source, server.port, n,
                                                                                     connections, prefix)
                    else:
                        runs[f"{kind}, N={connections}"] = run_kind(kind, server.port, n, connections, prefix)
            for name, got in runs.items():
                if got["delivered"] != n:
                    raise SystemExit(f"{name}: {got['delivered']} of {n} delivered")
                row = rows.setdefault(name, {"rate": [], "cpu": [], "rss": []})
                row["rate"].append(n / got["wall"])
                row["cpu"].append(got["cpu"] / n * 1e6)
                row["rss"].append(got["rss_kib"] / 1024)

    def cell(values: list[float], digits: int) -> str:
        if any(value != value for value in values):  # NaN: not measured
            return "-"
        return f"{statistics.median(values):,.{digits}f} ({min(values):,.{digits}f}-{max(values):,.{digits}f})"

    placing = "sink and clients on CPU 0" if args.same_cpu else "pinned" if args.pinned else "unpinned"
    print(f"{n} messages of 1 KiB to smtp-sink, {args.reps} reps, {placing}; "
          f"median (range); {clients.cpu_model()}\n")
    print("| client | msgs/s | client CPU µs/msg | peak memory MiB |")
    print("|---|---|---|---|")
    for name, row in sorted(rows.items(), key=lambda item: (int(item[0].rsplit("=", 1)[1]), item[0])):
        print(f"| {name} | {cell(row['rate'], 0)} | {cell(row['cpu'], 1)} | {cell(row['rss'], 1)} |")


if __name__ == "__main__":
    main()
