"""Many connections per process (issue 24, item 4): the asyncio driver's client CPU per message with 1
and with 100 concurrent connections to one local server, msgs/s, and memory per connection.

Each run is a child process: N ``AsyncSMTPClient`` connections to smtp-sink, each sending its share of
``--messages`` 1 KiB messages with ``send_many`` (one call per connection, all concurrent in one event
loop).  Reported: msgs/s, client CPU µs per message (from the first connect, imports excluded), and
the resident memory the N open connections add (sampled when all are connected, before sending),
per connection.  Medians of ``--reps`` with the range; sink on CPU 0, client on CPU 1 with
``--pinned``.  Every run is bounded in time (clients.CLIENT_SECONDS).

    cd bench && ../.venv/bin/python concurrency.py --messages 20000 --reps 3 --pinned
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import clients  # bench/ is a directory of scripts, not a package
import sinks

CONNECTIONS = (1, 100)
BODY = 1024 - clients.SMTP_SOURCE_HEADER_BYTES


def rss_kib() -> int:
    """Resident memory now (Linux /proc), in KiB."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def run_child(port: int, n: int, connections: int) -> dict[str, float]:
    import asyncio

    from smtp_fsm import AsyncSMTPClient

    message = clients.build_message(BODY)
    shares = [n // connections + (k < n % connections) for k in range(connections)]

    async def main() -> dict[str, float]:
        before = rss_kib()
        usage0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        opened = [AsyncSMTPClient(sinks.HOST, port, timeout=60, local_hostname=clients.HELO_NAME)
                  for _ in range(connections)]
        await asyncio.gather(*(client.connect() for client in opened))
        per_connection = (rss_kib() - before) / connections

        async def send(client: AsyncSMTPClient, share: int) -> int:
            results = await client.send_many(clients.distinct_items(message, share, [clients.RECIPIENT]))
            await client.quit()
            return sum(result.ok for result in results)

        delivered = sum(await asyncio.gather(*(send(c, s) for c, s in zip(opened, shares, strict=True))))
        wall, usage = time.perf_counter() - wall0, resource.getrusage(resource.RUSAGE_SELF)
        cpu = (usage.ru_utime - usage0.ru_utime) + (usage.ru_stime - usage0.ru_stime)
        return {"delivered": delivered, "wall": wall, "cpu": cpu, "kib_per_connection": per_connection}

    return asyncio.run(main())


def main(argv: list[str] | None = None) -> None:
    parser = clients.bench_parser(__doc__, 20000)
    parser.add_argument("--connections", type=int, nargs="*", default=list(CONNECTIONS))
    parser.add_argument("--child", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        (connections,) = args.connections
        print(json.dumps(run_child(args.child, args.messages, connections)))
        return
    prefix = sinks.pin_prefix(args.pinned, 1)
    rows: dict[int, dict[str, list[float]]] = {}
    n = args.messages
    for _ in range(args.reps):
        for connections in args.connections:  # (alternating)
            with sinks.start("smtp-sink", pinned=args.pinned, cpu=0) as server:
                argv_child = [*prefix, sys.executable, os.path.abspath(__file__), "--child", str(server.port),
                              "--messages", str(n), "--connections", str(connections)]
                done = subprocess.run(argv_child, capture_output=True, timeout=clients.CLIENT_SECONDS, check=True)
            got = json.loads(done.stdout)
            if got["delivered"] != n:
                raise SystemExit(f"N={connections}: {got['delivered']} of {n} delivered")
            row = rows.setdefault(connections, {"rate": [], "cpu": [], "kib": []})
            row["rate"].append(n / got["wall"])
            row["cpu"].append(got["cpu"] / n * 1e6)
            row["kib"].append(got["kib_per_connection"])

    def cell(values: list[float], digits: int) -> str:
        return f"{statistics.median(values):,.{digits}f} ({min(values):,.{digits}f}-{max(values):,.{digits}f})"

    print(f"{n} messages of 1 KiB to smtp-sink, {args.reps} reps, {'pinned' if args.pinned else 'unpinned'}; "
          f"median (range); {clients.cpu_model()}\n")
    print("| connections | msgs/s | client CPU µs/msg | KiB per connection |")
    print("|---|---|---|---|")
    for connections, row in sorted(rows.items()):
        print(f"| {connections} | {cell(row['rate'], 0)} | {cell(row['cpu'], 1)} | {cell(row['kib'], 1)} |")
    if 1 in rows and len(rows) > 1:
        base = statistics.median(rows[1]["cpu"])
        for connections, row in sorted(rows.items()):
            if connections != 1:
                print(f"\nCPU per message, {connections} connections / 1: "
                      f"{statistics.median(row['cpu']) / base:.2f}x")


if __name__ == "__main__":
    main()
