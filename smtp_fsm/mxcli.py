"""``smtp-fsm send`` without ``--server``: straight to each recipient domain's MX hosts (smtp_fsm.mx).

Loaded by cli.py only for that case (it needs dnspython, the ``[dns]`` extra).  Prints which host
took each domain (and which were passed over, and why), then each recipient's reply.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from .cli import (
    EXIT_CONNECT,
    EXIT_OK,
    EXIT_PROTOCOL,
    EXIT_REFUSED,
    EXIT_SOME_REFUSED,
    PROG,
    Mail,
    UsageError,
    _client,
    _print_recipients,
    _report_trace,
    exit_code_for,
)
from .errors import SMTPError
from .mx import Delivery, deliver
from .results import Outcome
from .sync import SMTPClient

#: Options that speak to one server and mean nothing when each domain has its own.
_SERVER_ONLY = (("tls", "--tls"), ("tls_sni", "--tls-sni"), ("auth_user", "--auth-user"), ("lmtp", "--lmtp"),
                ("quit_after", "--quit-after"), ("dsn_notify", "--dsn-notify"), ("dsn_ret", "--dsn-ret"))


def deliver_routed(mail: Mail, args: argparse.Namespace, transcript: TextIO | None) -> int:
    for attr, flag in _SERVER_ONLY:
        if getattr(args, attr):
            raise UsageError(f"{flag} needs --server: without it each domain goes to its own MX hosts")
    used: list[SMTPClient] = []

    def connect(address: str, host: str) -> SMTPClient:
        client = _client(args, address, args.mx_port, server_hostname=host)
        used.append(client)
        return client

    nameserver, dns_port = args.dns_server if args.dns_server else (None, None)
    deliveries = deliver(mail.sender, mail.recipients, mail.content, nameserver=nameserver,
                         nameserver_port=dns_port or 53, port=args.mx_port, connect=connect)
    for client in used:
        if client.trace:
            _report_trace(client, args, transcript)
    codes = [_report_domain(delivery, args.quiet) for delivery in dict.fromkeys(deliveries.values())]
    if all(code == EXIT_OK for code in codes):
        return EXIT_OK
    failures = [code for code in codes if code not in (EXIT_OK, EXIT_SOME_REFUSED, EXIT_REFUSED)]
    if failures:
        return failures[0]
    return EXIT_REFUSED if all(code == EXIT_REFUSED for code in codes) else EXIT_SOME_REFUSED


def _report_domain(delivery: Delivery, quiet: bool) -> int:
    """One domain's lines (routing and recipients on stdout; what went wrong on stderr); its exit code."""
    result = delivery.result
    passed = "; ".join(f"{a.host} [{a.address or 'no address'}]: {a.error}" for a in delivery.attempts)
    after = f" (after {passed})" if passed else ""
    where = f"{delivery.host} [{delivery.address}]"
    if result.outcome is Outcome.DELIVERED:
        if not quiet:
            print(f"{delivery.domain}: {where} took it{after}")
            _print_recipients(result)
        for rcpt, reply in result.refused.items() if quiet else ():
            print(f"{PROG}: refused <{rcpt}>: {reply}", file=sys.stderr)
        return EXIT_SOME_REFUSED if result.refused else EXIT_OK
    if result.outcome is Outcome.REFUSED:
        what = f"{where} refused it" if delivery.host is not None else "refused"
        if not quiet:
            print(f"{delivery.domain}: {what}{after}")
            _print_recipients(result)
        for rcpt, reply in result.refused.items():
            print(f"{PROG}: refused <{rcpt}>: {reply}", file=sys.stderr)
        if not result.refused:  # the sender or the data refused
            print(f"{PROG}: {delivery.domain}: message refused: {result.error}", file=sys.stderr)
        return EXIT_REFUSED
    fate = "may have it (uncertain)" if result.outcome is Outcome.UNCERTAIN else "not sent"
    if not quiet and delivery.host is not None:
        print(f"{delivery.domain}: {where} took the session{after}")
    print(f"{PROG}: {delivery.domain}: {fate}: {result.error}", file=sys.stderr)
    if delivery.host is None:  # no host took it: a connection failure (or DNS that did not answer)
        cause = result.error.__cause__ if result.error is not None else None
        return exit_code_for(cause, True) if isinstance(cause, SMTPError) else EXIT_CONNECT
    return exit_code_for(result.error, False) if result.error is not None else EXIT_PROTOCOL
