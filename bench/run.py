"""The whole comparison in one command: ``python bench/run.py`` prints the tables (Markdown).

For each server and message size, every client sends N messages over one
connection, one recipient each; clients alternate (the order rotates every
repetition), at least 5 repetitions, and the tables give medians with the
min..max spread.  Client and server are pinned to CPU 0 (``taskset``) for
the main table, then a second table runs unpinned.  Ratios compare msgs/s
medians of the same table.  An untimed pass counts socket reads and writes
per message (client side) and round trips (server writes carrying a
transaction reply, from the Python sink).  The engine alone (no I/O) comes
from bench/engine.py.  Run by hand, never as a timed test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import clients  # bench/ is a directory of scripts, not a package
import sinks

AIOSMTPLIB_HINT = "pip install aiosmtplib aiosmtpd   (or: pip install -e '.[bench]')"
PEERS = ("smtp-source", "smtplib", "aiosmtplib")


@dataclass(frozen=True)
class Scenario:
    title: str
    server: str
    body: int  # smtp-source -l: body octets; every client sends the same total size
    messages: int


@dataclass
class Row:
    client: str
    rates: list[float] = field(default_factory=list)  # messages/s
    cpu_us: list[float] = field(default_factory=list)  # client CPU per message
    failures: list[str] = field(default_factory=list)
    reads: float | None = None
    writes: float | None = None
    round_trips: float | None = None


def check_tools(wanted: list[str]) -> tuple[list[str], dict[str, str | None], list[str]]:
    """Clients that can run, tool paths, and what to install for the rest (printed, never hidden)."""
    tools = {name: sinks.find_tool(name) for name in ("smtp-sink", "smtp-source")}
    missing: list[str] = []
    runnable = list(wanted)
    if tools["smtp-sink"] is None or tools["smtp-source"] is None:
        missing.append("Postfix's smtp-sink/smtp-source are missing. Install them (as root) with:\n    "
                       + sinks.POSTFIX_HINT)
        if "smtp-source" in runnable and tools["smtp-source"] is None:
            runnable.remove("smtp-source")
    for module in ("aiosmtplib", "aiosmtpd"):
        try:
            __import__(module)
        except ImportError:
            missing.append(f"{module} is missing: {AIOSMTPLIB_HINT}")
            if module in runnable:
                runnable.remove(module)
    if shutil.which("taskset") is None:
        missing.append("taskset is missing (Debian package util-linux): the pinned table is skipped")
    return runnable, tools, missing


def spawn_overhead(prefix: list[str]) -> float:
    """Seconds to start and reap a trivial process: subtracted from smtp-source's wall time."""
    true = shutil.which("true") or "/bin/true"
    times = []
    for _ in range(7):
        t0 = time.perf_counter()
        subprocess.run([*prefix, true], check=False)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run_table(scenarios: list[Scenario], names: list[str], reps: int, pinned: bool,
              smtp_source: str | None) -> dict[str, dict[str, Row]]:
    prefix = sinks.pin_prefix(pinned)
    overhead = spawn_overhead(prefix)
    table: dict[str, dict[str, Row]] = {}
    for scenario in scenarios:
        if scenario.server == "smtp-sink" and sinks.find_tool("smtp-sink") is None:
            continue
        rows = {name: Row(name) for name in names}
        with sinks.start(scenario.server, pinned=pinned) as server:
            for rep in range(reps):
                shift = rep % len(names)
                for name in names[shift:] + names[:shift]:  # alternate: no client always goes first
                    server.drain()
                    outcome = clients.run_client(name, server.port, scenario.messages, scenario.body,
                                                 prefix=prefix, smtp_source=smtp_source)
                    stats = server.next_conn()
                    problem = _problem(outcome, stats, scenario.messages)
                    if problem:
                        rows[name].failures.append(problem)
                        continue
                    wall = outcome.wall - (overhead if name == "smtp-source" else 0.0)
                    rows[name].rates.append(scenario.messages / wall)
                    rows[name].cpu_us.append(outcome.cpu / scenario.messages * 1e6)
                print(f"  [{'pinned' if pinned else 'unpinned'}] {scenario.title}: repetition {rep + 1}/{reps} done",
                      file=sys.stderr, flush=True)
        table[scenario.title] = rows
    return table


def _problem(outcome: clients.Outcome, stats: sinks.ConnStats | None, n: int) -> str:
    if outcome.error:
        return outcome.error
    if outcome.delivered != n:
        return f"{outcome.delivered} of {n} messages accepted"
    if stats is not None and stats.messages != n:
        return f"the sink received {stats.messages} of {n} messages"
    return ""


def count_pass(scenarios: list[Scenario], names: list[str], smtp_source: str | None) -> dict[str, dict[str, Row]]:
    """Untimed: reads/writes per message (client) and round trips per message (Python sink's writes)."""
    counts: dict[str, dict[str, Row]] = {}
    for scenario in scenarios:
        n = min(scenario.messages, 200)
        rows: dict[str, Row] = {}
        # Round trips are visible only from the Python sink; 1 KiB scenarios are counted against it too.
        with sinks.start("pysink", pinned=False) as server:
            for name in names:
                server.drain()
                outcome = clients.run_client(name, server.port, n, scenario.body, prefix=[], count=True,
                                             smtp_source=smtp_source)
                stats = server.next_conn()
                row = Row(name)
                if outcome.reads >= 0:
                    row.reads, row.writes = outcome.reads / n, outcome.writes / n
                if stats is not None and stats.messages:
                    row.round_trips = stats.tx_sends / stats.messages
                if _problem(outcome, stats, n):
                    row.failures.append(_problem(outcome, stats, n))
                rows[name] = row
        counts[scenario.title] = rows
    return counts


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _fmt(value: float | None, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def render(title: str, table: dict[str, dict[str, Row]], counts: dict[str, dict[str, Row]],
           scenarios: list[Scenario]) -> str:
    lines = [f"### {title}", ""]
    for scenario in scenarios:
        rows = table.get(scenario.title)
        if rows is None:
            continue
        size = scenario.body + clients.SMTP_SOURCE_HEADER_BYTES
        lines += [f"**{scenario.title}** ({scenario.messages} messages of {size} octets, one connection)", ""]
        lines.append("| client | msgs/s median (min..max) | MB/s | client CPU µs/msg | reads/msg | writes/msg "
                     "| round trips/msg | x smtp-source | x smtplib | x aiosmtplib |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|")
        medians = {name: _median(row.rates) for name, row in rows.items()}
        for name, row in rows.items():
            rate = medians[name]
            counted = counts.get(scenario.title, {}).get(name, Row(name))
            ratios = []
            for peer in PEERS:
                base = medians.get(peer)
                ratios.append("n/a" if rate is None or not base else f"{rate / base:.2f}")
            spread = f"{_fmt(rate)} ({_fmt(min(row.rates))}..{_fmt(max(row.rates))})" if row.rates else "failed"
            mbs = None if rate is None else rate * size / 1e6
            lines.append(
                f"| {name} | {spread} | {_fmt(mbs, 1)} | {_fmt(_median(row.cpu_us), 1)} | {_fmt(counted.reads, 2)} "
                f"| {_fmt(counted.writes, 2)} | {_fmt(counted.round_trips, 2)} | {' | '.join(ratios)} |"
            )
        failures = [f"{name}: {msg}" for name, row in rows.items() for msg in row.failures[:2]]
        if failures:
            lines += ["", "Failed runs (not in the medians): " + "; ".join(failures)]
        lines.append("")
    return "\n".join(lines)


def targets(table: dict[str, dict[str, Row]], counts: dict[str, dict[str, Row]], engine: dict[str, Any],
            scenarios: list[Scenario]) -> str:
    """Issue 8's targets against the pinned table."""
    def rate(scenario: Scenario, client: str) -> float | None:
        row = table.get(scenario.title, {}).get(client)
        return _median(row.rates) if row else None

    def ratio(scenario: Scenario, a: str, b: str) -> float | None:
        x, y = rate(scenario, a), rate(scenario, b)
        return x / y if x and y else None

    out = ["### Targets (issue 8, pinned table)", "", "| target | measured | met |", "|---|---|---|"]

    def add(label: str, value: float | None, goal: float, higher: bool = True, unit: str = "x") -> None:
        if value is None:
            out.append(f"| {label} | n/a | n/a |")
            return
        met = value >= goal if higher else value <= goal
        out.append(f"| {label} | {value:.2f}{unit} | {'yes' if met else 'NO'} |")

    small = next((s for s in scenarios if s.server == "smtp-sink"), None)
    big = next((s for s in scenarios if s.server == "pysink"), None)
    if small is not None:
        add("1 KiB smtp-sink, fsm-many >= 1.0x smtp-source", ratio(small, "fsm-many", "smtp-source"), 1.0)
        add("1 KiB smtp-sink, fsm-many >= 2.0x smtplib", ratio(small, "fsm-many", "smtplib"), 2.0)
        add("1 KiB smtp-sink, fsm-each >= 1.3x smtplib", ratio(small, "fsm-each", "smtplib"), 1.3)
        add("1 KiB smtp-sink, fsm-async >= 4x aiosmtplib", ratio(small, "fsm-async", "aiosmtplib"), 4.0)
        add("1 KiB smtp-sink, fsm-async >= 1.0x smtplib", ratio(small, "fsm-async", "smtplib"), 1.0)
        rt = counts.get(small.title, {})
        # The session's last reply (and any split read) adds a little over N messages.
        add("round trips/msg, fsm-many (pipelined) = 1 (<= 1.02)", rt.get("fsm-many", Row("")).round_trips, 1.02,
            False, "")
        add("round trips/msg, fsm-nopipe <= smtplib's 4", rt.get("fsm-nopipe", Row("")).round_trips, 4.0, False, "")
    if big is not None:
        add("100 KiB Python sink, fsm-many >= 3.0x smtplib MB/s", ratio(big, "fsm-many", "smtplib"), 3.0)
        add("100 KiB Python sink, fsm-many >= 1.0x smtp-source", ratio(big, "fsm-many", "smtp-source"), 1.0)
    if engine:
        add("engine alone <= 30 µs per 1-recipient message", engine.get("us_per_message"), 30.0, False, " µs")
        memory = engine.get("memory", {})
        per = memory.get("bytes_per_idle_engine")
        add("memory <= 32 KiB per idle engine", None if per is None else per / 1024, 32.0, False, " KiB")
        released = memory.get("models_after_close") == 0 and memory.get("alive_after_close_and_gc") == 0
        out.append(f"| closed engines released (machine models, gc) | models left {memory.get('models_after_close')}, "
                   f"engines alive {memory.get('alive_after_close_and_gc')} | {'yes' if released else 'NO'} |")
    return "\n".join(out) + "\n"


def run_engine(pinned: bool, messages: int) -> dict[str, Any]:
    argv = [*sinks.pin_prefix(pinned), sys.executable, os.path.join(os.path.dirname(__file__), "engine.py"),
            "--messages", str(messages), "--components"]
    done = subprocess.run(argv, capture_output=True, timeout=600, check=False)
    if done.returncode != 0:
        print(f"engine benchmark failed: {done.stderr.decode()[-600:]}", file=sys.stderr)
        return {}
    result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return result


def render_engine(engine: dict[str, Any]) -> str:
    if not engine:
        return "### Engine alone\n\nfailed (see stderr)\n"
    memory = engine["memory"]
    lines = [
        "### Engine alone (no I/O, pinned)", "",
        f"- pipelined send_many, 1 recipient, {engine['body'] + clients.SMTP_SOURCE_HEADER_BYTES} octets: "
        f"**{engine['us_per_message']:.1f} µs/message** (min {engine['us_min']:.1f}, max {engine['us_max']:.1f}); "
        f"queueing (send_many) {engine['us_queue']:.1f} µs, replies and triggers {engine['us_replies']:.1f} µs "
        f"(each message its own bytes; one bytes object for all, prepared once: "
        f"{engine.get('us_per_message_shared', float('nan')):.1f} µs/message)",
        f"- same at 100 KiB: {engine.get('us_per_message_100k', float('nan')):,.1f} µs/message",
        f"- memory: {memory['bytes_per_fresh_engine'] / 1024:.2f} KiB per fresh engine, "
        f"{memory['bytes_per_idle_engine'] / 1024:.2f} KiB per idle engine after EHLO "
        f"({memory['engines']:,} alive); after close(): {memory['models_after_close']} models left on the shared "
        f"machine, {memory['alive_after_close_without_gc']} engines alive without gc, "
        f"{memory['alive_after_close_and_gc']} after gc, {memory['bytes_left_after_close']:,} bytes still traced",
        "", "| component (µs per call, best of 5) | 1 KiB | 100 KiB |", "|---|---|---|",
    ]
    big = engine.get("components_100k_us", {})
    for key, value in engine.get("components_us", {}).items():
        other = big.get(key)
        lines.append(f"| {key} | {value:,.2f} | {'' if other is None else f'{other:,.1f}'} |")
    return "\n".join(lines) + "\n"


def machine_line() -> str:
    return (f"Machine: {os.cpu_count()} CPUs (nproc {_nproc()}), {platform.machine()}, {clients.cpu_model()}, "
            f"Python {platform.python_version()} ({platform.python_implementation()}), {platform.platform()}")


def engine_version() -> str:
    """The commit measured (the engine changes often; a table without it means little)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(["git", "-C", root, "log", "-1", "--format=%h %s"], capture_output=True, text=True,
                              check=False).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--", "smtp_fsm"], capture_output=True,
                               text=True, check=False).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head[:90]}{' (smtp_fsm/ has uncommitted changes)' if dirty else ''}"


def _nproc() -> str:
    try:
        return subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="smtp_fsm benchmark: throughput, CPU and round trips per message")
    parser.add_argument("--messages", type=int, default=2000, help="messages per run at 1 KiB (default 2000; "
                        "100 KiB runs send a twentieth, aiosmtpd runs half)")
    parser.add_argument("--reps", type=int, default=5, help="repetitions per client (default 5)")
    parser.add_argument("--quick", action="store_true", help="a fast sanity run: 100 messages, 2 repetitions")
    parser.add_argument("--no-pin", action="store_true", help="skip the pinned table (only the unpinned one)")
    parser.add_argument("--only", default="", help="comma-separated clients (default all): "
                        + ",".join(clients.ALL_CLIENTS))
    parser.add_argument("--servers", default="smtp-sink,pysink,aiosmtpd", help="which scenarios to run")
    parser.add_argument("--no-engine", action="store_true", help="skip the engine-alone measurements")
    args = parser.parse_args(argv)
    messages, reps = (100, 2) if args.quick else (args.messages, args.reps)
    wanted = [name.strip() for name in args.only.split(",") if name.strip()] or list(clients.ALL_CLIENTS)
    unknown = set(wanted) - set(clients.ALL_CLIENTS)
    if unknown:
        parser.error(f"unknown clients {sorted(unknown)}; choose from {', '.join(clients.ALL_CLIENTS)}")
    names, tools, missing = check_tools(wanted)
    for message in missing:
        print(f"NOTE: {message}", file=sys.stderr)
    all_scenarios = [
        Scenario("1 KiB, Postfix smtp-sink", "smtp-sink", 1024, messages),
        # A twentieth: today's engine spends ~50 ms on a 100 KiB message (see bench/README.md).
        Scenario("100 KiB, Python sink (bytes.find)", "pysink", 100 * 1024, max(messages // 20, 10)),
        Scenario("1 KiB, aiosmtpd (slow reference)", "aiosmtpd", 1024, max(messages // 2, 10)),
    ]
    chosen = {name.strip() for name in args.servers.split(",")}
    scenarios = [s for s in all_scenarios if s.server in chosen]
    if "aiosmtpd" in chosen and any("aiosmtpd" in m for m in missing):
        scenarios = [s for s in scenarios if s.server != "aiosmtpd"]
    pin = not args.no_pin and shutil.which("taskset") is not None

    command = "python bench/run.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"## Benchmark results\n\nCommand: `{command.strip()}`  \n{machine_line()}  \n"
          f"Engine: {engine_version()}  \n"
          f"Started {time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n")
    started = time.monotonic()
    version = engine_version()
    engine = {} if args.no_engine else run_engine(pin, 3000 if not args.quick else 300)
    counts = count_pass(scenarios, names, tools["smtp-source"])
    pinned = run_table(scenarios, names, reps, True, tools["smtp-source"]) if pin else {}
    unpinned = run_table(scenarios, names, reps, False, tools["smtp-source"])
    if pinned:
        print(targets(pinned, counts, engine, scenarios))
        print(render("Pinned: client and server on CPU 0 (taskset -c 0)", pinned, counts, scenarios))
    print(render("Unpinned", unpinned, counts, scenarios))
    if engine:
        print(render_engine(engine))
    print("Clients: " + "; ".join(f"{name} = {clients.DESCRIPTIONS[name]}" for name in names))
    print(f"\nTook {time.monotonic() - started:.0f} s.")
    if engine_version() != version:
        print(f"\nWARNING: the engine changed during the run (now {engine_version()}): the tables mix versions.")
    for message in missing:
        print(f"\nNOTE: {message}")
    failed = any(row.failures for table in (pinned, unpinned) for rows in table.values() for row in rows.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
