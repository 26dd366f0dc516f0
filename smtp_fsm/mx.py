"""Direct delivery: each recipient domain's MX hosts, tried in order (RFC 5321 §5.1).

``deliver`` groups the recipients by domain (an internationalised domain is looked up by its
A-labels) and, for each domain:

1. asks DNS for its MX records; a null MX (RFC 7505: one record, preference 0, exchange ".")
   refuses the domain at once with 556 5.1.10 (RFC 7504), a domain that does not exist with
   550 5.1.2; a domain that exists without MX is its own mail host (the implicit MX), but only
   if it has an address;
2. orders the hosts by preference, equal preferences in random order (§5.1 requires it);
3. tries every A, then every AAAA address of each host in turn.  The next address or host is
   tried only while no MAIL has been sent: a refused connection, a 4xx/5xx or 421 greeting,
   a failed EHLO, a failed TLS handshake (which moves on to the next *host*: a message never
   falls back to plain text on a host whose TLS failed), or STARTTLS missing when it is
   required.  Once the first MAIL is out the host's answer is the message's outcome
   (the four outcomes of ``SendResult``): a message is never sent to a second host.

The TLS name checked is the MX host's name.  ``starttls="opportunistic"`` is the default, as
for MTAs.  DNS is dnspython's (``pip install 'smtp_fsm[dns]'``); give a ``resolver`` or a
``nameserver`` to use another than the system's (split DNS, tests).
"""

from __future__ import annotations

import ipaddress
import random
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.message import Message
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ._extras import require
from .addresses import ascii_domain, encode_address
from .errors import LocalProtocolError, RecipientsRefused, SMTPError, TLSError, TLSUnavailable
from .message import envelope_from_headers
from .protocol.table import READY
from .replies import Reply
from .results import Outcome, SendResult
from .session import StartTLSPolicy
from .sync import SMTPClient

if TYPE_CHECKING:
    import dns.resolver

SMTP_PORT = 25
#: How long one DNS question may take, all tries included.
DNS_LIFETIME = 10.0

Connect = Callable[[str, str], SMTPClient]


@dataclass(frozen=True)
class Attempt:
    """One host address that did not take the message, and why (before any MAIL was sent)."""

    host: str
    address: str | None  # None: the host has no address
    error: SMTPError


@dataclass(frozen=True, eq=False)
class Delivery:
    """What became of one domain's recipients: the host that took the transaction, or None.

    Compared by identity: the recipients of one domain share the one ``Delivery``."""

    domain: str
    host: str | None
    address: str | None
    result: SendResult
    attempts: tuple[Attempt, ...] = ()


@dataclass
class Route:
    """Where a domain's mail goes: its hosts in the order to try, or the refusal that ends it."""

    domain: str
    hosts: list[str] = field(default_factory=list)
    refusal: Reply | None = None  # 5xx: refused for good
    failure: SMTPError | None = None  # DNS did not answer: try again later
    addresses: dict[str, list[str]] = field(default_factory=dict)  # those already looked up


def _dns() -> tuple[ModuleType, ModuleType]:
    """dnspython's resolver and exception modules (the ``[dns]`` extra), or MissingExtra."""
    return require("dns.resolver", "dns", "MX routing"), require("dns.exception", "dns", "MX routing")


def make_resolver(nameserver: str, port: int = 53) -> dns.resolver.Resolver:
    """A resolver asking ``nameserver`` (an address) only, and no system configuration."""
    resolver_module, _ = _dns()
    try:
        ipaddress.ip_address(nameserver)
    except ValueError:
        raise LocalProtocolError(f"the name server must be an IP address, not {nameserver!r}") from None
    resolver: dns.resolver.Resolver = resolver_module.Resolver(configure=False)
    resolver.nameservers = [nameserver]
    resolver.port = port
    resolver.lifetime = DNS_LIFETIME
    return resolver


def route(domain: str, resolver: dns.resolver.Resolver, rng: random.Random | None = None) -> Route:
    """The MX hosts of ``domain`` (A-labels), in the order to try them."""
    dns_resolver, dns_exception = _dns()
    if domain.startswith("["):  # an address literal: that host, no DNS
        inner = domain[1:-1]
        return Route(domain, [inner[5:] if inner[:5].lower() == "ipv6:" else inner])
    try:
        answer = resolver.resolve(domain, "MX", search=False)
    except dns_resolver.NXDOMAIN:
        return Route(domain, refusal=Reply(550, (f"5.1.2 domain {domain} does not exist (NXDOMAIN)",)))
    except dns_resolver.NoAnswer:
        # RFC 5321 §5.1: no MX, so the domain is its own host -- if it has an address at all.
        addresses, trouble = _addresses(domain, resolver)
        if addresses:
            return Route(domain, [domain], addresses={domain: addresses})
        if trouble is not None:  # not known to have none: try again later, never refuse for it
            return Route(domain, failure=trouble)
        return Route(domain, refusal=Reply(550, (f"5.1.2 domain {domain} has no MX and no address",)))
    except dns_exception.DNSException as exc:  # a timeout, no server answering: try again later
        return Route(domain, failure=SMTPError(f"DNS lookup of the MX of {domain} failed: {exc}"))
    records = [(int(r.preference), str(r.exchange).rstrip(".")) for r in answer]
    if len(records) == 1 and records[0][1] == "":
        # RFC 7505 §3: a null MX says the domain takes no mail; RFC 7504's code for it.
        return Route(domain, refusal=Reply(556, (f"5.1.10 domain {domain} accepts no mail (null MX)",)))
    by_preference: dict[int, list[str]] = {}
    for preference, host in sorted(records):
        if host and all(host.lower() not in hosts for hosts in by_preference.values()):  # once, at its best
            by_preference.setdefault(preference, []).append(host.lower())
    hosts: list[str] = []
    shuffle = (rng or random).shuffle
    for preference in sorted(by_preference):
        tied = sorted(by_preference[preference])  # DNS gives no order; a seeded rng then repeats itself
        shuffle(tied)  # RFC 5321 §5.1: equal preferences MUST be tried in random order
        hosts.extend(tied)
    return Route(domain, hosts)


def _addresses(host: str, resolver: dns.resolver.Resolver) -> tuple[list[str], SMTPError | None]:
    """Every A, then every AAAA address of ``host``; and the DNS trouble met, if any (a timeout,
    SERVFAIL: the host may have addresses nobody could tell), as opposed to a plain "none"."""
    dns_resolver, dns_exception = _dns()
    found: list[str] = []
    trouble: SMTPError | None = None
    for rdtype in ("A", "AAAA"):
        try:
            found.extend(str(record) for record in resolver.resolve(host, rdtype, search=False))
        except (dns_resolver.NXDOMAIN, dns_resolver.NoAnswer):
            continue  # none of this family
        except dns_exception.DNSException as exc:
            trouble = SMTPError(f"DNS lookup of the {rdtype} records of {host} failed: {exc}")
    return found, trouble


def deliver(
    sender: str,
    recipients: str | Iterable[str],
    msg: bytes | str | Message,
    *,
    resolver: dns.resolver.Resolver | None = None,
    nameserver: str | None = None,
    nameserver_port: int = 53,
    port: int = SMTP_PORT,
    starttls: StartTLSPolicy = "opportunistic",
    tls_context: ssl.SSLContext | None = None,
    local_hostname: str | None = None,
    timeout: float = 60.0,
    data_timeout: float = 600.0,
    connect: Connect | None = None,
    rng: random.Random | None = None,
    max_addresses: int = 10,
) -> dict[str, Delivery]:
    """Send one message to each recipient's domain's mail hosts; a ``Delivery`` per recipient.

    Recipients of one domain share one transaction and so one ``Delivery``.  ``connect(address,
    host)`` makes the client for one attempt (the command line uses it for its own settings);
    by default an ``SMTPClient`` with the keywords given here and ``server_hostname=host``.
    At most ``max_addresses`` addresses are tried per domain (RFC 5321 §5.1 lets a client
    bound them; a host or address listed twice is tried once).
    """
    encode_address(sender, smtputf8=True, allow_null=True)  # a bad sender raises before any DNS question
    wanted = (recipients,) if isinstance(recipients, str) else tuple(dict.fromkeys(recipients))
    if not wanted:
        raise LocalProtocolError("no recipients given")
    by_domain: dict[str, list[str]] = {}
    for rcpt in wanted:  # invalid addresses raise here, before any DNS question
        by_domain.setdefault(ascii_domain(rcpt), []).append(rcpt)
    if resolver is None:  # the one given, else the system's
        resolver = make_resolver(nameserver, nameserver_port) if nameserver is not None else _dns()[0].Resolver()
    if connect is None:
        options: dict[str, Any] = dict(starttls=starttls, tls_context=tls_context, local_hostname=local_hostname,
                                       timeout=timeout, data_timeout=data_timeout)

        def connect(address: str, host: str) -> SMTPClient:
            return SMTPClient(address, port, server_hostname=host, **options)

    out: dict[str, Delivery] = {}
    for domain, rcpts in by_domain.items():
        delivery = _deliver_domain(route(domain, resolver, rng), resolver, sender, tuple(rcpts), msg, connect,
                                   max_addresses)
        out.update(dict.fromkeys(rcpts, delivery))
    return out


def deliver_message(msg: Message, from_addr: str | None = None, to_addrs: str | Iterable[str] | None = None,
                    **options: Any) -> dict[str, Delivery]:
    """``deliver`` for an ``email`` message: the envelope comes from its headers unless given."""
    sender, recipients = envelope_from_headers(msg)
    return deliver(from_addr if from_addr is not None else sender,
                   to_addrs if to_addrs is not None else recipients, msg, **options)


def _deliver_domain(where: Route, resolver: dns.resolver.Resolver, sender: str, rcpts: tuple[str, ...],
                    msg: bytes | str | Message, connect: Connect, max_addresses: int) -> Delivery:
    if where.refusal is not None:
        refused = dict.fromkeys(rcpts, where.refusal)
        result = SendResult(sender, rcpts, refused=refused, error=RecipientsRefused(refused),
                            outcome=Outcome.REFUSED)
        return Delivery(where.domain, None, None, result)
    if where.failure is not None:
        return Delivery(where.domain, None, None, SendResult(sender, rcpts, error=where.failure))
    attempts: list[Attempt] = []
    tried: set[str] = set()
    for host in where.hosts:
        if where.domain.startswith("["):
            addresses, trouble = [host], None
        elif host in where.addresses:
            addresses, trouble = where.addresses[host], None
        else:
            addresses, trouble = _addresses(host, resolver)
        if not addresses:
            attempts.append(Attempt(host, None, trouble or SMTPError(f"MX host {host} has no A or AAAA record")))
        for address in addresses:
            if address in tried:
                continue
            if len(tried) >= max_addresses:
                break
            tried.add(address)
            client = connect(address, host)
            try:
                client.connect()
                result = _send(client, sender, rcpts, msg)
            except SMTPError as exc:  # no MAIL was sent: the next address (or host) may take it
                client.close()
                attempts.append(Attempt(host, address, exc))
                if isinstance(exc, TLSError | TLSUnavailable):
                    break  # this host's TLS failed (or timed out): never plain text here, on to the next host
                continue
            return Delivery(where.domain, host, address, result, tuple(attempts))
    last = attempts[-1].error if attempts else SMTPError(f"no mail host for {where.domain}")
    error = SMTPError(f"no mail host of {where.domain} took the message ({len(attempts)} tried); last: {last}")
    error.__cause__ = last
    return Delivery(where.domain, None, None, SendResult(sender, rcpts, error=error), tuple(attempts))


def _send(client: SMTPClient, sender: str, rcpts: tuple[str, ...], msg: bytes | str | Message) -> SendResult:
    """The transaction on a host that is ready: once MAIL is out, whatever happens is the outcome.

    Raises when the host failed before MAIL went out (a 421 or a close while the session was
    still ``ready``): the next host may take the message.
    """
    try:
        (result,) = client.send_many([(sender, rcpts, msg)])
    except SMTPError as exc:  # cut short: the error says whether the content went out
        if getattr(exc, "state", None) == READY and not exc.completed and not exc.uncertain:
            raise  # nothing of the transaction was written
        outcome = Outcome.UNCERTAIN if exc.uncertain else Outcome.NOT_SENT
        result = exc.completed[0] if exc.completed else SendResult(sender, rcpts, error=exc, outcome=outcome)
    try:
        client.quit()
    except SMTPError:
        pass  # the message's fate is known; a rude goodbye changes nothing
    finally:
        client.close()
    return result


__all__ = ["Attempt", "Delivery", "Route", "deliver", "deliver_message", "make_resolver", "route"]
