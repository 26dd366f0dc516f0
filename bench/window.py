"""The BDAT window (issue 23): round trips per message and msgs/s for W = 1, 4, 16, 64.

smtp_fsm's blocking ``send_many`` sends N messages to the Python sink offering CHUNKING
(``pysink-bdat``), with ``bdat_window=W``; the sink counts the writes that carry transaction replies,
i.e. the round trips the client waited for.  Postfix's ``smtp-source`` (which cannot chunk) sends
the same messages to the same sink over DATA, and to ``smtp-sink``, for reference.  Clients
alternate, each in its own process; the sink is pinned to CPU 0 and the clients to CPU 1 with
``--pinned``.  Medians of ``--reps`` runs, with the range; every run is bounded in time.

    python bench/window.py --messages 2000 --reps 3 --pinned
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import clients  # bench/ is a directory of scripts, not a package
import sinks

WINDOWS = (1, 4, 16, 64)
BODY = 1024 - clients.SMTP_SOURCE_HEADER_BYTES  # 1 KiB messages, as bench/run.py sends


def run_child(port: int, messages: int, window: int) -> dict[str, float]:
    """In the child: send, and report wall and CPU seconds (imports and connecting excluded)."""
    from smtp_fsm import SMTPClient

    message = clients.build_message(BODY)
    items = clients.distinct_items(message, messages, [clients.RECIPIENT])
    with SMTPClient(sinks.HOST, port, timeout=60, local_hostname=clients.HELO_NAME, bdat_window=window) as client:
        usage0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        results = client.send_many(items)
        wall, usage = time.perf_counter() - wall0, resource.getrusage(resource.RUSAGE_SELF)
    cpu = (usage.ru_utime - usage0.ru_utime) + (usage.ru_stime - usage0.ru_stime)
    return {"delivered": sum(r.ok for r in results), "wall": wall, "cpu": cpu}


def run_window(port: int, messages: int, window: int, prefix: list[str]) -> dict[str, float]:
    return clients.run_script_child(__file__, ["--child", str(port), "--messages", str(messages),
                                               "--window", str(window)], prefix)


def main(argv: list[str] | None = None) -> None:
    parser = clients.bench_parser(__doc__, 2000)
    parser.add_argument("--child", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--window", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_child(args.child, args.messages, args.window)))
        return
    prefix = sinks.pin_prefix(args.pinned, 1)
    source = sinks.find_tool("smtp-source")
    rows: dict[str, dict[str, list[float]]] = {}

    def add(name: str, rate: float, cpu_us: float, trips: float | None) -> None:
        row = rows.setdefault(name, {"rate": [], "cpu": [], "trips": []})
        row["rate"].append(rate)
        row["cpu"].append(cpu_us)
        if trips is not None:
            row["trips"].append(trips)

    n = args.messages
    for _ in range(args.reps):
        with sinks.start("pysink-bdat", pinned=args.pinned, cpu=0) as server:
            for window in WINDOWS:
                got = run_window(server.port, n, window, prefix)
                stats = server.next_conn(timeout=30)
                if got["delivered"] != n or stats is None or stats.messages != n:
                    raise SystemExit(f"W={window}: {got['delivered']} delivered, sink saw {stats}")
                add(f"send_many, bdat_window={window}", n / got["wall"], got["cpu"] / n * 1e6,
                    stats.tx_sends / n)
            if source is not None:
                out = clients.run_smtp_source(source, server.port, n, BODY, prefix)
                stats = server.next_conn(timeout=30)
                if out.delivered != n:
                    raise SystemExit(f"smtp-source: {out.error}")
                add("smtp-source (DATA) to the same sink", n / out.wall, out.cpu / n * 1e6,
                    stats.tx_sends / n if stats else None)
        if source is not None:
            with sinks.start("smtp-sink", pinned=args.pinned, cpu=0) as server:
                out = clients.run_smtp_source(source, server.port, n, BODY, prefix)
                if out.delivered == n:
                    add("smtp-source (DATA) to smtp-sink", n / out.wall, out.cpu / n * 1e6, None)

    def cell(values: list[float], digits: int) -> str:
        if not values:
            return "-"
        return f"{statistics.median(values):,.{digits}f} ({min(values):,.{digits}f}-{max(values):,.{digits}f})"

    print(f"{n} messages of 1 KiB, {args.reps} reps, {'pinned' if args.pinned else 'unpinned'}; "
          f"median (range); {clients.cpu_model()}\n")
    print("| client | msgs/s | client CPU µs/msg | round trips per message |")
    print("|---|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {cell(row['rate'], 0)} | {cell(row['cpu'], 1)} | {cell(row['trips'], 3)} |")


if __name__ == "__main__":
    main()
