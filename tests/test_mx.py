"""Direct delivery (smtp_fsm.mx) against a DNS responder and SMTP servers on loopback addresses.

Every MX host resolves to its own 127.0.0.x address and every server listens on the same port
there, so routing is tested as it runs: DNS answers, then connections.  Never a real resolver,
never an address off loopback.
"""

from __future__ import annotations

import contextlib
import random
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from dnsserver import DNSResponder

from smtp_fsm import (
    LocalProtocolError,
    Outcome,
    RecipientsRefused,
    SMTPConnectError,
    SMTPTimeout,
    TLSError,
    TLSHandshakeTimeout,
    TLSUnavailable,
)
from smtp_fsm.mx import deliver, make_resolver, route
from smtp_fsm.testing.servers import LocalSMTPServer, RecordingHandler, TestTLS, make_test_tls

MESSAGE = b"Subject: mx\r\n\r\nstraight to the MX\r\n"
SENDER = "a@sender.example"
MX1, MX2, MX3, DEAD, BUSY = "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"


def common_port(*hosts: str) -> int:
    """A port free on every one of ``hosts`` (bounded tries)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind((hosts[0], 0))
            port: int = probe.getsockname()[1]
        try:
            for host in hosts[1:]:
                with socket.socket() as other:
                    other.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no port free on every address")


PORT = common_port(MX1, MX2, MX3, DEAD, BUSY)

ZONE = {
    ("example.org", "MX"): ["10 mx1.example.org.", "20 mx2.example.org."],
    ("mx1.example.org", "A"): [MX1],
    ("mx2.example.org", "A"): [MX2],
    ("mx3.example.org", "A"): [MX3],
    ("dead.example.org", "A"): [DEAD],
    ("busy.example.org", "A"): [BUSY],
    ("deadfirst.example", "MX"): ["5 dead.example.org.", "10 mx2.example.org."],
    ("busyfirst.example", "MX"): ["5 busy.example.org.", "10 mx2.example.org."],
    ("tied.example", "MX"): ["10 mx1.example.org.", "10 mx2.example.org.", "30 mx3.example.org."],
    ("implicit.example", "A"): [MX3],
    ("noaddress.example", "TXT"): ['"no mail here"'],
    ("nullmx.example", "MX"): ["0 ."],
    ("nullmx.example", "A"): [MX1],
    ("xn--bcher-kva.example", "MX"): ["10 mx3.example.org."],
    ("tls.example", "MX"): ["10 mx1.example.org.", "20 mx2.example.org."],
    ("stall.example", "MX"): ["5 busy.example.org.", "10 mx2.example.org."],
    ("twice.example", "MX"): ["10 dead.example.org.", "20 DEAD.example.org.", "30 dead2.example.org.",
                              "40 mx2.example.org."],
    ("dead2.example.org", "A"): [DEAD],
    ("flaky.example", "TXT"): ['"its A records cannot be looked up"'],
}


@pytest.fixture
def dns_server() -> Iterator[DNSResponder]:
    with DNSResponder(ZONE, servfail=frozenset({"flaky.example"})) as server:
        yield server


@pytest.fixture
def servers() -> Iterator[dict[str, LocalSMTPServer]]:
    """Plain aiosmtpd servers on MX1, MX2 and MX3 (MX1 refuses refused@example.org at RCPT)."""
    made = {MX1: LocalSMTPServer(host=MX1, port=PORT,
                                 handler=RecordingHandler(refuse={"refused@example.org": "550 5.1.1 no such user"})),
            MX2: LocalSMTPServer(host=MX2, port=PORT), MX3: LocalSMTPServer(host=MX3, port=PORT)}
    with contextlib.ExitStack() as stack:
        for server in made.values():
            stack.enter_context(server)
        yield made


def raw_server(*lines: bytes, hold: bool = False) -> Iterator[None]:
    """A server on BUSY that says ``lines[0]``, then answers each line it reads with the next one, and hangs up."""
    listener = socket.create_server((BUSY, PORT))
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():  # bounded by the fixture's teardown
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                conn.sendall(lines[0])
                for line in lines[1:]:
                    with contextlib.suppress(OSError):
                        conn.recv(4096)
                        conn.sendall(line)
                if hold:  # then silence, the connection kept open (a stalled TLS handshake)
                    stop.wait(10)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(timeout=5)
    listener.close()


@pytest.fixture
def busy_server() -> Iterator[None]:
    """Every connection is greeted with 421."""
    yield from raw_server(b"421 4.3.2 busy, try another host\r\n")


@pytest.fixture
def refusing_server() -> Iterator[None]:
    """Greets, then refuses EHLO and HELO."""
    yield from raw_server(b"220 picky ESMTP\r\n", b"554 5.7.1 not you\r\n", b"554 5.7.1 not you either\r\n")


def send(dns_server: DNSResponder, *recipients: str, **options: object) -> dict[str, object]:
    options = {"timeout": 5.0, **options}
    return deliver(SENDER, recipients, MESSAGE, nameserver=dns_server.host, nameserver_port=dns_server.port,
                   port=PORT, **options)  # type: ignore[arg-type]


def test_the_most_preferred_host_takes_the_message(dns_server: DNSResponder,
                                                   servers: dict[str, LocalSMTPServer]) -> None:
    (delivery,) = set(send(dns_server, "b@example.org", "c@Example.org").values())
    assert delivery.host == "mx1.example.org" and delivery.address == MX1 and delivery.attempts == ()
    assert delivery.result.outcome is Outcome.DELIVERED and set(delivery.result.accepted) == {"b@example.org",
                                                                                            "c@Example.org"}
    assert [m.rcpt_tos for m in servers[MX1].messages] == [("b@example.org", "c@Example.org")]  # one transaction
    assert servers[MX2].messages == []
    assert dns_server.questions[:2] == [("example.org", "MX"), ("mx1.example.org", "A")]


def test_a_dead_first_host_passes_to_the_next(dns_server: DNSResponder, servers: dict[str, LocalSMTPServer]) -> None:
    delivery = send(dns_server, "b@deadfirst.example")["b@deadfirst.example"]
    assert delivery.host == "mx2.example.org" and delivery.result.ok
    (attempt,) = delivery.attempts
    assert attempt.host == "dead.example.org" and attempt.address == DEAD
    assert isinstance(attempt.error, SMTPConnectError)
    assert len(servers[MX2].messages) == 1


@pytest.mark.usefixtures("busy_server")
def test_a_421_greeting_passes_to_the_next_host(dns_server: DNSResponder, servers: dict[str, LocalSMTPServer]) -> None:
    delivery = send(dns_server, "b@busyfirst.example")["b@busyfirst.example"]
    assert delivery.host == "mx2.example.org" and delivery.result.ok
    (attempt,) = delivery.attempts
    assert attempt.host == "busy.example.org" and "421" in str(attempt.error)


@pytest.mark.usefixtures("refusing_server")
def test_a_refused_ehlo_passes_to_the_next_host(dns_server: DNSResponder,
                                                servers: dict[str, LocalSMTPServer]) -> None:
    delivery = send(dns_server, "b@busyfirst.example")["b@busyfirst.example"]
    assert delivery.host == "mx2.example.org" and delivery.result.ok
    (attempt,) = delivery.attempts
    assert attempt.host == "busy.example.org" and "554" in str(attempt.error)


def test_once_mail_is_sent_the_host_s_answer_stands(dns_server: DNSResponder,
                                                    servers: dict[str, LocalSMTPServer]) -> None:
    delivery = send(dns_server, "refused@example.org")["refused@example.org"]
    assert delivery.host == "mx1.example.org" and delivery.result.outcome is Outcome.REFUSED
    assert delivery.result.refused["refused@example.org"].code == 550
    assert servers[MX2].messages == [] and servers[MX1].messages == []  # never tried elsewhere


def test_equal_preferences_are_tried_in_random_order(dns_server: DNSResponder) -> None:
    resolver = make_resolver(dns_server.host, dns_server.port)
    firsts = [route("tied.example", resolver).hosts for _ in range(200)]  # bounded: 200 lookups
    assert all(hosts[2] == "mx3.example.org" for hosts in firsts)  # the worse preference always last
    mx1_first = sum(hosts[0] == "mx1.example.org" for hosts in firsts)
    # Binomial(200, 0.5): 60..140 holds with probability 1 - 1e-8; a fixed order gives 0 or 200.
    assert 60 <= mx1_first <= 140, mx1_first
    seeded = [route("tied.example", resolver, random.Random(7)).hosts for _ in range(2)]
    assert seeded[0] == seeded[1]  # an rng can be given, for reproducible runs


def test_a_domain_without_mx_is_its_own_host(dns_server: DNSResponder, servers: dict[str, LocalSMTPServer]) -> None:
    delivery = send(dns_server, "b@implicit.example")["b@implicit.example"]
    assert delivery.host == "implicit.example" and delivery.address == MX3 and delivery.result.ok
    assert ("implicit.example", "MX") in dns_server.questions


def test_a_domain_without_mx_or_address_is_refused(dns_server: DNSResponder) -> None:
    delivery = send(dns_server, "b@noaddress.example")["b@noaddress.example"]
    assert delivery.host is None and delivery.result.outcome is Outcome.REFUSED
    assert delivery.result.refused["b@noaddress.example"].code == 550


def test_a_null_mx_refuses_at_once_with_556(dns_server: DNSResponder, servers: dict[str, LocalSMTPServer]) -> None:
    delivery = send(dns_server, "b@nullmx.example")["b@nullmx.example"]
    reply = delivery.result.refused["b@nullmx.example"]
    assert (reply.code, reply.enhanced_code) == (556, "5.1.10") and delivery.result.outcome is Outcome.REFUSED
    assert isinstance(delivery.result.error, RecipientsRefused) and delivery.attempts == ()
    assert dns_server.questions == [("nullmx.example", "MX")]  # no fallback to its A record
    assert servers[MX1].messages == []


def test_a_domain_that_does_not_exist_is_refused(dns_server: DNSResponder) -> None:
    delivery = send(dns_server, "b@nowhere.example")["b@nowhere.example"]
    reply = delivery.result.refused["b@nowhere.example"]
    assert reply.code == 550 and "does not exist" in reply.text and delivery.result.outcome is Outcome.REFUSED


def test_an_internationalised_domain_is_looked_up_by_its_a_label(
        dns_server: DNSResponder, servers: dict[str, LocalSMTPServer]) -> None:
    delivery = send(dns_server, "b@bücher.example")["b@bücher.example"]
    assert delivery.host == "mx3.example.org" and delivery.result.ok
    assert dns_server.questions[0] == ("xn--bcher-kva.example", "MX")
    assert servers[MX3].messages[0].rcpt_tos == ("b@xn--bcher-kva.example",)  # no SMTPUTF8 there: A-labels


def test_recipients_of_two_domains_go_to_two_hosts(dns_server: DNSResponder,
                                                   servers: dict[str, LocalSMTPServer]) -> None:
    deliveries = send(dns_server, "b@example.org", "c@implicit.example", "d@nowhere.example")
    assert deliveries["b@example.org"].host == "mx1.example.org"
    assert deliveries["c@implicit.example"].host == "implicit.example"
    assert deliveries["d@nowhere.example"].result.outcome is Outcome.REFUSED
    assert len(servers[MX1].messages) == len(servers[MX3].messages) == 1


def test_dns_that_does_not_answer_leaves_the_message_not_sent() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # bound, never read: no answer comes
        silent.bind(("127.0.0.1", 0))
        resolver = make_resolver("127.0.0.1", silent.getsockname()[1])
        resolver.lifetime = 0.5
        delivery = deliver(SENDER, ["b@example.org"], MESSAGE, resolver=resolver, port=PORT)["b@example.org"]
    assert delivery.result.outcome is Outcome.NOT_SENT and "DNS lookup" in str(delivery.result.error)


@pytest.fixture(scope="module")
def tls() -> TestTLS:
    return make_test_tls("mx1.example.org", "mx2.example.org")


def test_a_failed_handshake_moves_to_the_next_host_never_to_plain_text(dns_server: DNSResponder,
                                                                       tls: TestTLS) -> None:
    untrusted = make_test_tls("mx1.example.org")  # another CA: our client context does not trust it
    with LocalSMTPServer(host=MX1, port=PORT, starttls_context=untrusted.server_context) as first, \
            LocalSMTPServer(host=MX2, port=PORT, starttls_context=tls.server_context) as second:
        delivery = send(dns_server, "b@tls.example", tls_context=tls.client_context)["b@tls.example"]
        assert delivery.host == "mx2.example.org" and delivery.result.ok
        (attempt,) = delivery.attempts
        assert attempt.host == "mx1.example.org" and isinstance(attempt.error, TLSError)
        assert first.messages == [] and second.messages[0].peer_tls  # the name checked was mx2.example.org


def test_starttls_required_is_honoured_per_host(dns_server: DNSResponder, tls: TestTLS) -> None:
    with LocalSMTPServer(host=MX1, port=PORT) as plain, \
            LocalSMTPServer(host=MX2, port=PORT, starttls_context=tls.server_context) as secure:
        delivery = send(dns_server, "b@tls.example", starttls="required",
                        tls_context=tls.client_context)["b@tls.example"]
        assert delivery.host == "mx2.example.org" and delivery.result.ok
        assert isinstance(delivery.attempts[0].error, TLSUnavailable)
        assert plain.messages == [] and secure.messages[0].peer_tls


def test_the_command_line_routes_without_server(dns_server: DNSResponder, servers: dict[str, LocalSMTPServer],
                                                tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "smtp_fsm", "send", "--from", SENDER, "--to", "b@example.org",
         "--to", "c@deadfirst.example", "--to", "d@nullmx.example", "--subject", "routed", "--body", "hi",
         "--dns-server", f"{dns_server.host}:{dns_server.port}", "--mx-port", str(PORT), "--timeout", "5"],
        capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path)
    out = done.stdout
    assert f"example.org: mx1.example.org [{MX1}] took it" in out, out + done.stderr
    assert f"deadfirst.example: mx2.example.org [{MX2}] took it (after dead.example.org [{DEAD}]:" in out
    assert "nullmx.example: refused" in out and "556 5.1.10" in out
    assert done.returncode == 1  # some recipients refused
    assert [m.message["Subject"] for m in servers[MX1].messages] == ["routed"]


def test_an_address_literal_is_its_own_host_and_bcc_stays_out_of_the_headers(dns_server: DNSResponder) -> None:
    from email.message import EmailMessage

    from smtp_fsm.mx import deliver_message

    msg = EmailMessage()
    msg["From"], msg["To"], msg["Bcc"], msg["Subject"] = SENDER, f"b@[{MX1}]", f"c@[{MX1}]", "literal"
    msg.set_content("no DNS for an address literal")
    with LocalSMTPServer(host=MX1, port=PORT) as server:
        deliveries = deliver_message(msg, nameserver=dns_server.host, nameserver_port=dns_server.port, port=PORT)
        (delivery,) = dict.fromkeys(deliveries.values())
        assert delivery.host == MX1 and delivery.result.ok and dns_server.questions == []
        (received,) = server.messages
    assert received.rcpt_tos == (f"b@[{MX1}]", f"c@[{MX1}]") and "Bcc" not in received.message


@pytest.fixture
def stalling_tls_server() -> Iterator[None]:
    """Offers STARTTLS, says 220 to it, then never answers the ClientHello."""
    yield from raw_server(b"220 busy ESMTP\r\n", b"250-busy\r\n250 STARTTLS\r\n", b"220 go ahead\r\n", hold=True)


@pytest.fixture
def idle_421_server() -> Iterator[None]:
    """Answers EHLO, then says 421 and hangs up before any MAIL."""
    yield from raw_server(b"220 busy ESMTP\r\n", b"250 busy\r\n421 4.3.2 going down\r\n")


@pytest.mark.usefixtures("stalling_tls_server")
def test_a_handshake_that_times_out_moves_to_the_next_host(dns_server: DNSResponder, tls: TestTLS,
                                                           servers: dict[str, LocalSMTPServer]) -> None:
    delivery = send(dns_server, "b@stall.example", tls_context=tls.client_context, timeout=0.5)["b@stall.example"]
    assert delivery.host == "mx2.example.org" and delivery.result.ok
    (attempt,) = delivery.attempts
    assert isinstance(attempt.error, TLSHandshakeTimeout) and isinstance(attempt.error, SMTPTimeout)


@pytest.mark.usefixtures("idle_421_server")
def test_a_421_before_any_mail_passes_to_the_next_host(dns_server: DNSResponder,
                                                       servers: dict[str, LocalSMTPServer]) -> None:
    delivery = send(dns_server, "b@busyfirst.example")["b@busyfirst.example"]
    assert delivery.host == "mx2.example.org" and delivery.result.ok
    assert "421" in str(delivery.attempts[0].error) and len(servers[MX2].messages) == 1


def test_a_host_or_address_listed_twice_is_tried_once(dns_server: DNSResponder,
                                                      servers: dict[str, LocalSMTPServer]) -> None:
    delivery = send(dns_server, "b@twice.example")["b@twice.example"]
    # DEAD.example.org is dead.example.org again; dead2.example.org has DEAD's address: neither is tried
    assert delivery.host == "mx2.example.org" and delivery.result.ok
    assert [(a.host, a.address) for a in delivery.attempts] == [("dead.example.org", DEAD)]


def test_dns_trouble_on_the_implicit_mx_is_not_a_refusal(dns_server: DNSResponder) -> None:
    delivery = send(dns_server, "b@flaky.example")["b@flaky.example"]
    assert delivery.result.outcome is Outcome.NOT_SENT and "DNS lookup" in str(delivery.result.error)


def test_an_ipv6_literal_is_its_own_host() -> None:
    with LocalSMTPServer(host="::1") as server:
        deliveries = deliver(SENDER, ["b@[IPv6:::1]"], MESSAGE, nameserver="127.0.0.1", port=server.port, timeout=5)
        assert deliveries["b@[IPv6:::1]"].result.ok and deliveries["b@[IPv6:::1]"].address == "::1"
        assert server.messages[0].rcpt_tos == ("b@[IPv6:::1]",)


def test_a_bad_sender_or_name_server_is_refused_before_any_question(dns_server: DNSResponder) -> None:
    with pytest.raises(LocalProtocolError):
        deliver("not an address", ["b@example.org"], MESSAGE, nameserver=dns_server.host,
                nameserver_port=dns_server.port, port=PORT)
    with pytest.raises(LocalProtocolError, match="IP address"):
        deliver(SENDER, ["b@example.org"], MESSAGE, nameserver="localhost", port=PORT)
    assert dns_server.questions == []


def test_the_command_line_says_why_and_exits_3_when_no_host_answers(dns_server: DNSResponder,
                                                                    tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "smtp_fsm", "send", "--from", SENDER, "--to", "b@twice.example", "--quiet",
         "--body", "hi", "--dns-server", f"{dns_server.host}:{dns_server.port}", "--mx-port", str(PORT),
         "--timeout", "5"], capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path)
    assert done.returncode == 3 and done.stdout == "", (done.stdout, done.stderr)
    assert done.stderr.startswith("smtp-fsm: twice.example: not sent: no mail host of twice.example took")
