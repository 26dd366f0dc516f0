"""100 KiB messages over TLS (issue 24): smtp_fsm against smtplib, plain and over implicit TLS.

The Python sink (``pysink``, the content located with ``bytearray.find``) serves the plain runs
and, behind implicit TLS (``pysink-tls``, a certificate from a throwaway trustme CA), the TLS
runs.  Clients: smtp_fsm's blocking ``send_many`` (pipelined: one round trip per message), and
smtplib's ``sendmail`` per message (``SMTP``, ``SMTP_SSL``).  Over TLS the socket cannot take
``sendmsg``: every byte is copied into TLS records, so what the plain runs save in copies the
TLS runs cannot.  Clients alternate, each in its own process; sink on CPU 0, clients on CPU 1
with ``--pinned``.  Medians of ``--reps`` runs, with the range; every run is bounded in time.

    python bench/tls.py --messages 200 --reps 3 --pinned
"""

from __future__ import annotations

import argparse
import json
import resource
import ssl
import statistics
import tempfile
import time
from pathlib import Path

import clients  # bench/ is a directory of scripts, not a package
import sinks

BODY = 102400  # 100 KiB of body: 102,535 octets with the headers, as bench/run.py sends
CLIENTS = ("smtp_fsm send_many", "smtplib sendmail")


def run_child(client: str, port: int, messages: int, cafile: str | None) -> dict[str, float]:
    """In the child: send, and report wall and CPU seconds (imports and connecting excluded)."""
    import smtplib

    from smtp_fsm import SMTPClient

    message = clients.build_message(BODY)
    context = ssl.create_default_context(cafile=cafile) if cafile else None
    tls = context is not None
    delivered = 0
    if client == "smtp_fsm send_many":
        with SMTPClient(sinks.HOST, port, timeout=60, local_hostname=clients.HELO_NAME, tls=tls,
                        tls_context=context) as fsm:
            usage0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            results = fsm.send_many(clients.distinct_items(message, messages, [clients.RECIPIENT]))
            wall, usage = time.perf_counter() - wall0, resource.getrusage(resource.RUSAGE_SELF)
        delivered = sum(result.ok for result in results)
    else:
        smtp: smtplib.SMTP = (smtplib.SMTP_SSL(sinks.HOST, port, local_hostname=clients.HELO_NAME, timeout=60,
                                               context=context) if context is not None
                              else smtplib.SMTP(sinks.HOST, port, local_hostname=clients.HELO_NAME, timeout=60))
        with smtp:
            smtp.ehlo()
            usage0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            for _ in range(messages):
                delivered += not smtp.sendmail(clients.SENDER, [clients.RECIPIENT], message)
            wall, usage = time.perf_counter() - wall0, resource.getrusage(resource.RUSAGE_SELF)
    cpu = (usage.ru_utime - usage0.ru_utime) + (usage.ru_stime - usage0.ru_stime)
    return {"delivered": delivered, "wall": wall, "cpu": cpu}


def run_client(client: str, port: int, messages: int, cafile: str | None, prefix: list[str]) -> dict[str, float]:
    args = ["--child", str(port), "--client", client, "--messages", str(messages)]
    return clients.run_script_child(__file__, args + (["--cafile", cafile] if cafile else []), prefix)


def main(argv: list[str] | None = None) -> None:
    parser = clients.bench_parser(__doc__, 200)
    parser.add_argument("--child", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--client", choices=CLIENTS, help=argparse.SUPPRESS)
    parser.add_argument("--cafile", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_child(args.client, args.child, args.messages, args.cafile)))
        return
    import trustme

    prefix = sinks.pin_prefix(args.pinned, 1)
    n = args.messages
    rows: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        ca = trustme.CA()
        cert = ca.issue_cert("localhost", sinks.HOST)  # (the clients check the address they connect to)
        cafile, certfile, keyfile = (str(Path(tmp) / name) for name in ("ca.pem", "cert.pem", "key.pem"))
        ca.cert_pem.write_to_path(cafile)
        cert.private_key_pem.write_to_path(keyfile)
        Path(certfile).write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        probe = ssl.create_default_context(cafile=cafile)
        for rep in range(args.reps):
            for kind in ("pysink", "pysink-tls"):
                tls = (certfile, keyfile, probe) if kind == "pysink-tls" else None
                with sinks.start(kind, pinned=args.pinned, cpu=0, tls=tls) as server:
                    order = CLIENTS if rep % 2 == 0 else tuple(reversed(CLIENTS))
                    for client in order:
                        got = run_client(client, server.port, n, cafile if tls else None, prefix)
                        stats = server.next_conn(timeout=30)
                        if got["delivered"] != n or stats is None or stats.messages != n:
                            raise SystemExit(f"{client} to {kind}: {got['delivered']} delivered, sink saw {stats}")
                        row = rows.setdefault(f"{client}, {'TLS' if tls else 'plain'}", {"rate": [], "cpu": []})
                        row["rate"].append(n / got["wall"])
                        row["cpu"].append(got["cpu"] / n * 1e6)

    def cell(values: list[float], digits: int) -> str:
        return f"{statistics.median(values):,.{digits}f} ({min(values):,.{digits}f}-{max(values):,.{digits}f})"

    size = len(clients.build_message(BODY))
    print(f"{n} messages of {size} octets, {args.reps} reps, {'pinned' if args.pinned else 'unpinned'}; "
          f"median (range); {clients.cpu_model()}\n")
    print("| client | msgs/s | MB/s | client CPU µs/msg | x smtplib MB/s, same link |")
    print("|---|---|---|---|---|")
    for name, row in rows.items():
        link = name.rsplit(", ", 1)[1]
        base = statistics.median(rows[f"smtplib sendmail, {link}"]["rate"])
        rate = statistics.median(row["rate"])
        print(f"| {name} | {cell(row['rate'], 0)} | {rate * size / 1e6:,.1f} | {cell(row['cpu'], 1)} | "
              f"{rate / base:.2f} |")


if __name__ == "__main__":
    main()
