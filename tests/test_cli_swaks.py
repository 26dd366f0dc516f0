"""swaks' everyday options for ``smtp-fsm send``, each against a real server on the loopback.

The driver keywords behind them (``family``, ``source_address``) are tested through both drivers too.
"""

from __future__ import annotations

import contextlib
import email.utils
import getpass
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from conftest import REQUIRE_TOOLS
from cryptography.hazmat.primitives import serialization
from drivers import DRIVERS, make_client
from test_cli import run_cli, text

import smtp_fsm
from smtp_fsm import cli
from smtp_fsm.errors import LocalProtocolError, SMTPConnectError
from smtp_fsm.testing import LocalSMTPServer, RecordingHandler
from smtp_fsm.testing.servers import free_port

SENDER = "alice@example.org"
RCPT = "bob@example.org"
BASE = ("--from", SENDER, "--to", RCPT, "--body", "x")
both = pytest.mark.parametrize("kind", sorted(DRIVERS))


@dataclass
class PeerHandler(RecordingHandler):
    """RecordingHandler that also keeps where each session came from (aiosmtpd's ``session.peer``)."""

    peers: list[tuple[str, int]] = field(default_factory=list)

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        self.peers.append((str(session.peer[0]), int(session.peer[1])))
        return await super().handle_EHLO(server, session, envelope, hostname, responses)


@pytest.fixture
def server() -> Iterator[LocalSMTPServer]:
    with LocalSMTPServer(handler=PeerHandler()) as running:
        yield running


def peers(server: LocalSMTPServer) -> list[tuple[str, int]]:
    assert isinstance(server.handler, PeerHandler)
    return server.handler.peers


def at(server: LocalSMTPServer, host: str | None = None) -> str:
    return f"{host or server.host}:{server.port}"


@contextlib.contextmanager
def ipv6_server() -> Iterator[tuple[PeerHandler, int]]:
    """aiosmtpd on [::1] (LocalSMTPServer listens on 127.0.0.1 only); skipped locally where ::1 cannot be
    bound, a failure in CI (SMTP_FSM_REQUIRE_TOOLS=1), whose machines have it."""
    try:
        port = free_port("::1", socket.AF_INET6)
    except OSError as exc:
        if REQUIRE_TOOLS:
            pytest.fail(f"no IPv6 loopback here: {exc}")
        pytest.skip(f"no IPv6 loopback here: {exc}")
    handler = PeerHandler()
    controller = Controller(handler, hostname="::1", port=port, server_hostname="mx6.smtp-fsm.test")
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``smtp-fsm ARGS`` in this process (so a test can patch the user and host name); code, stdout, stderr."""
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


# -- -4 / -6 and the driver keyword family ---------------------------------------------------


@both
def test_driver_family_inet_resolves_localhost_to_ipv4(kind: str, server: LocalSMTPServer) -> None:
    with make_client(kind, "localhost", server.port, family=socket.AF_INET, timeout=10) as client:
        assert client.family == socket.AF_INET
        result = client.sendmail(SENDER, [RCPT], b"Subject: v4\r\n\r\nover IPv4\r\n")
    assert result.ok
    assert [peer for peer, _ in peers(server)] == ["127.0.0.1"]


@both
def test_driver_family_inet6_reaches_an_ipv6_server(kind: str) -> None:
    with ipv6_server() as (handler, port):
        with make_client(kind, "::1", port, family=socket.AF_INET6, timeout=10) as client:
            client.sendmail(SENDER, [RCPT], b"Subject: v6\r\n\r\nover IPv6\r\n")
    assert [peer for peer, _ in handler.peers] == ["::1"]
    assert [message.mail_from for message in handler.messages] == [SENDER]


@both
def test_driver_family_inet6_to_an_ipv4_address_is_a_connect_error(kind: str, server: LocalSMTPServer) -> None:
    client = make_client(kind, server.host, server.port, family=socket.AF_INET6, timeout=10)
    with pytest.raises(SMTPConnectError), client:
        pass
    assert peers(server) == []


@pytest.mark.parametrize("keywords", [
    {"family": True},  # a flag by mistake: True == 1, False == AF_UNSPEC
    {"family": 3},
    {"family": "inet"},
    {"source_address": "127.0.0.2"},
    {"source_address": ("127.0.0.2",)},
    {"source_address": ("", 0)},
    {"source_address": ("127.0.0.2", 65536)},
    {"source_address": ("127.0.0.2", True)},
    {"source_address": ("127.0.0.2\n", 0)},
    {"source_address": ("::1", 0), "family": socket.AF_INET},
    {"source_address": ("127.0.0.2", 0), "family": socket.AF_INET6},
    {"server_hostname": ".example.org"},
    {"server_hostname": "a b"},
])
@both
def test_driver_refuses_bad_family_and_source_address_before_connecting(kind: str, keywords: dict[str, Any]) -> None:
    with pytest.raises(LocalProtocolError):
        make_client(kind, "127.0.0.1", 25, **keywords)


def test_dash_4_connects_to_localhost_over_ipv4(server: LocalSMTPServer) -> None:
    done = run_cli("send", "-4", "--server", at(server, "localhost"), *BASE)
    assert done.returncode == cli.EXIT_OK, done.stderr
    assert [peer for peer, _ in peers(server)] == ["127.0.0.1"]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_dash_6_to_an_ipv4_only_server_gives_exit_3(server: LocalSMTPServer, host: str) -> None:
    # localhost resolves to ::1 (refused: nobody listens there) or to no IPv6 address at all.
    done = run_cli("send", "-6", "--server", at(server, host), *BASE)
    assert done.returncode == cli.EXIT_CONNECT, done.stderr
    assert "connection failed: cannot connect to" in text(done.stderr)
    assert server.messages == []


def test_dash_6_reaches_an_ipv6_server() -> None:
    with ipv6_server() as (handler, port):
        done = run_cli("send", "-6", "--server", f"[::1]:{port}", *BASE)
    assert done.returncode == cli.EXIT_OK, done.stderr
    assert [peer for peer, _ in handler.peers] == ["::1"]


def test_dash_4_and_dash_6_exclude_each_other() -> None:
    done = run_cli("send", "-4", "-6", "--server", "127.0.0.1:2525", *BASE)
    assert done.returncode == cli.EXIT_USAGE
    assert "not allowed with argument" in text(done.stderr)


# -- --local-interface and the driver keyword source_address --------------------------------------


@both
def test_driver_source_address_is_the_peer_the_server_sees(kind: str, server: LocalSMTPServer) -> None:
    # Linux routes all of 127.0.0.0/8 to the loopback: 127.0.0.2 is a local address without any set-up.
    with make_client(kind, server.host, server.port, source_address=("127.0.0.2", 0), timeout=10) as client:
        client.sendmail(SENDER, [RCPT], b"Subject: from .2\r\n\r\nx\r\n")
    assert [peer for peer, _ in peers(server)] == ["127.0.0.2"]
    assert "EHLO [127.0.0.2]" in server.handler.commands  # our address literal follows the bound address


def test_local_interface_address(server: LocalSMTPServer) -> None:
    done = run_cli("send", "--server", at(server), "--local-interface", "127.0.0.2", *BASE)
    assert done.returncode == cli.EXIT_OK, done.stderr
    assert [peer for peer, _ in peers(server)] == ["127.0.0.2"]


def test_local_interface_address_and_port(server: LocalSMTPServer) -> None:
    port = free_port("127.0.0.3")
    done = run_cli("send", "--server", at(server), "--local-interface", f"127.0.0.3:{port}", *BASE)
    assert done.returncode == cli.EXIT_OK, done.stderr
    assert peers(server) == [("127.0.0.3", port)]


def test_local_interface_ipv6_in_brackets() -> None:
    with ipv6_server() as (handler, port):
        done = run_cli("send", "--server", f"[::1]:{port}", "--local-interface", "[::1]", *BASE)
    assert done.returncode == cli.EXIT_OK, done.stderr
    assert [peer for peer, _ in handler.peers] == ["::1"]


@pytest.mark.parametrize(("value", "expected"), [
    ("127.0.0.2", ("127.0.0.2", 0)),
    ("127.0.0.2:2600", ("127.0.0.2", 2600)),
    ("127.0.0.2:0", ("127.0.0.2", 0)),
    ("[::1]", ("::1", 0)),
    ("[::1]:2600", ("::1", 2600)),
    ("::1", ("::1", 0)),
    ("client.example.org", ("client.example.org", 0)),
])
def test_local_interface_forms(value: str, expected: tuple[str, int]) -> None:
    assert cli._local_interface(value) == expected


@pytest.mark.parametrize("args", [
    ("--local-interface", "127.0.0.2:65536"),
    ("--local-interface", "[::1"),
    ("--local-interface", ":25"),
    ("-4", "--local-interface", "[::1]"),  # the driver refuses the mismatch before connecting
    ("-6", "--local-interface", "127.0.0.2"),
])
def test_bad_local_interface_gives_exit_2(args: tuple[str, ...]) -> None:
    done = run_cli("send", "--server", "127.0.0.1:2525", *args, *BASE)
    assert done.returncode == cli.EXIT_USAGE, done.stderr
    assert [line for line in text(done.stderr).splitlines() if "error:" in line] != []
    assert "Traceback" not in text(done.stderr)


# -- --helo ------------------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--helo", "--ehlo"])
def test_helo_is_an_alias_of_ehlo(server: LocalSMTPServer, flag: str) -> None:
    done = run_cli("send", "--server", at(server), flag, "client.example.org", *BASE)
    assert done.returncode == cli.EXIT_OK, done.stderr
    assert server.handler.commands[0] == "EHLO client.example.org"


# -- TLS: --tls-sni, --tls-cert/--tls-key, --insecure ---------------------------------------------


@dataclass
class PKI:
    ca: trustme.CA
    cafile: Path
    directory: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    directory = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    return PKI(ca, directory / "ca.pem", directory)


def server_context(pki: PKI, *names: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    pki.ca.issue_cert(*(names or ("127.0.0.1",))).configure_cert(context)
    return context


def test_tls_sni_is_sent_and_checked(pki: PKI) -> None:
    context = server_context(pki, "mx.sni.test")
    seen: list[str | None] = []
    context.sni_callback = lambda _sock, name, _context: seen.append(name)
    with LocalSMTPServer(starttls_context=context) as running:
        done = run_cli("send", "--server", at(running), "--starttls", "required", "--cafile", str(pki.cafile),
                       "--tls-sni", "mx.sni.test", *BASE)
        assert done.returncode == cli.EXIT_OK, done.stderr
        assert seen == ["mx.sni.test"]
        assert running.messages[0].peer_tls
        # The same server without --tls-sni: its certificate is not for 127.0.0.1.
        done = run_cli("send", "--server", at(running), "--starttls", "required", "--cafile", str(pki.cafile),
                       *BASE)
        assert done.returncode == cli.EXIT_CONNECT
        assert "certificate" in text(done.stderr)
        assert len(running.messages) == 1


@pytest.mark.parametrize("name", [".example.org", "two words", ""])
def test_bad_tls_sni_gives_exit_2(name: str) -> None:
    done = run_cli("send", "--server", "127.0.0.1:2525", "--tls-sni", name, *BASE)
    assert done.returncode == cli.EXIT_USAGE
    assert "--tls-sni" in text(done.stderr) and "Traceback" not in text(done.stderr)


@dataclass
class ClientCert:
    cert: Path  # the certificate alone
    key: Path  # its key alone
    combined: Path  # key and certificate in one file
    other_key: Path  # a key of another certificate
    encrypted_key: Path


@pytest.fixture(scope="module")
def client_cert(pki: PKI) -> ClientCert:
    issued = pki.ca.issue_cert("client@example.org")
    files = ClientCert(*(pki.directory / name for name in ("c.pem", "k.pem", "ck.pem", "other.pem", "enc.pem")))
    issued.cert_chain_pems[0].write_to_path(str(files.cert))
    issued.private_key_pem.write_to_path(str(files.key))
    issued.private_key_and_cert_chain_pem.write_to_path(str(files.combined))
    pki.ca.issue_cert("someone-else@example.org").private_key_pem.write_to_path(str(files.other_key))
    key = serialization.load_pem_private_key(issued.private_key_pem.bytes(), password=None)
    files.encrypted_key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                      serialization.BestAvailableEncryption(b"secret")))
    return files


class CertRequiredServer(LocalSMTPServer):
    tls_version = ""


@pytest.fixture(params=["TLSv1_2", "TLSv1_3"])
def cert_required_server(request: pytest.FixtureRequest, pki: PKI) -> Iterator[CertRequiredServer]:
    """STARTTLS that requires a client certificate from the test CA.

    In TLS 1.2 the server refuses inside the handshake; in TLS 1.3 the client's handshake is done before
    the server checks the certificate, so the refusal comes as a hang-up before the second EHLO.
    Both are exit 3.  (Implicit TLS cannot be used here: aiosmtpd's start-up probe has no certificate.)
    """
    context = server_context(pki)
    context.verify_mode = ssl.CERT_REQUIRED
    pki.ca.configure_trust(context)  # load_verify_locations of the test CA
    context.maximum_version = getattr(ssl.TLSVersion, request.param)
    running = CertRequiredServer(starttls_context=context)
    running.tls_version = request.param
    with running:
        yield running


@pytest.mark.parametrize("files", [("cert", "key"), ("combined",)])
def test_client_certificate_is_accepted(cert_required_server: CertRequiredServer, pki: PKI, client_cert: ClientCert,
                                        files: tuple[str, ...]) -> None:
    paths = [str(getattr(client_cert, name)) for name in files]
    options = ["--tls-cert", paths[0]] + (["--tls-key", paths[1]] if len(paths) > 1 else [])
    done = run_cli("send", "--server", at(cert_required_server), "--starttls", "required",
                   "--cafile", str(pki.cafile), *options, *BASE)
    assert done.returncode == cli.EXIT_OK, done.stderr
    assert cert_required_server.messages[0].peer_tls


def test_no_client_certificate_is_a_tls_failure(cert_required_server: CertRequiredServer, pki: PKI) -> None:
    done = run_cli("send", "--server", at(cert_required_server), "--starttls", "required",
                   "--cafile", str(pki.cafile), *BASE)
    assert done.returncode == cli.EXIT_CONNECT, done.stderr
    assert "connection failed" in text(done.stderr)
    if cert_required_server.tls_version == "TLSv1_2":
        assert "TLS handshake with 127.0.0.1 failed" in text(done.stderr)
    else:  # a hang-up after the handshake: said as such, with a hint
        assert "server closed the connection (in state 'ehlo')" in text(done.stderr)
        assert "may require a client certificate (--tls-cert)" in text(done.stderr)
    assert cert_required_server.messages == []


@pytest.mark.parametrize(("options", "says"), [
    (("--tls-cert", "{cert}", "--tls-key", "{other_key}"), "does not belong to the certificate"),
    (("--tls-cert", "{cert}"), "not a PEM certificate followed by its key"),
    (("--tls-cert", "{cafile}", "--tls-key", "{cafile}"), "not a PEM certificate and a PEM private key"),
    (("--tls-cert", "{cert}", "--tls-key", "{encrypted_key}"), "the private key is encrypted"),
    (("--tls-cert", "/nonexistent/c.pem"), "cannot read --tls-cert /nonexistent/c.pem"),
    (("--tls-cert", "{cert}", "--tls-key", "/nonexistent/k.pem"), "cannot read --tls-cert"),
    (("--tls-key", "{key}"), "--tls-key needs --tls-cert"),
])
def test_bad_client_certificate_files_give_exit_2(client_cert: ClientCert, pki: PKI, options: tuple[str, ...],
                                                  says: str) -> None:
    names = {**{name: str(path) for name, path in vars(client_cert).items()}, "cafile": str(pki.cafile)}
    # Nothing listens on the port: the files are checked before any connection (and any password prompt).
    done = run_cli("send", "--server", f"127.0.0.1:{free_port('127.0.0.1')}",
                   *(option.format(**names) for option in options), *BASE)
    assert done.returncode == cli.EXIT_USAGE, done.stderr
    errors = [line for line in text(done.stderr).splitlines() if "error:" in line]
    assert len(errors) == 1 and says in errors[0], done.stderr


def test_insecure_connects_to_an_untrusted_server_and_warns(pki: PKI) -> None:
    with LocalSMTPServer(starttls_context=server_context(pki, "not-this-host.test")) as running:
        done = run_cli("send", "--server", at(running), "--starttls", "required", "--insecure", *BASE)
        assert done.returncode == cli.EXIT_OK, done.stderr
        assert running.messages[0].peer_tls
        assert text(done.stderr).splitlines()[0] == cli.INSECURE_WARNING
        # Without it: the CA is not trusted (and the name is wrong): no session.
        done = run_cli("send", "--server", at(running), "--starttls", "required", *BASE)
        assert done.returncode == cli.EXIT_CONNECT
        assert cli.INSECURE_WARNING not in text(done.stderr)


def test_insecure_warns_every_time_even_when_the_connection_fails() -> None:
    done = run_cli("send", "--server", f"127.0.0.1:{free_port('127.0.0.1')}", "--insecure", *BASE)
    assert done.returncode == cli.EXIT_CONNECT
    assert cli.INSECURE_WARNING == ("smtp-fsm: WARNING: --insecure: the server's certificate is not checked; "
                                    "anyone on the path can read and change this session")
    assert cli.INSECURE_WARNING in text(done.stderr)


def test_insecure_with_cafile_is_a_usage_error(pki: PKI) -> None:
    done = run_cli("send", "--server", "127.0.0.1:2525", "--insecure", "--cafile", str(pki.cafile), *BASE)
    assert done.returncode == cli.EXIT_USAGE
    assert "--insecure" in text(done.stderr)


# -- --attach-type, --attach-name -------------------------------------------------------------------


def test_attach_type_and_name_apply_to_the_next_attach(server: LocalSMTPServer, tmp_path: Path) -> None:
    (tmp_path / "x1").write_bytes(b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n")
    (tmp_path / "data.csv").write_bytes(b"a,b\n1,2\n")
    (tmp_path / "old.eml").write_bytes(b"Subject: old\r\n\r\nold\r\n")
    done = run_cli("send", "--server", at(server), *BASE,
                   "--attach-type", "text/calendar", "--attach-name", "invite.ics", "--attach", str(tmp_path / "x1"),
                   "--attach", str(tmp_path / "data.csv"),  # nothing pending: guessed, its own name
                   "--attach-name", "报告.csv", "--attach", str(tmp_path / "data.csv"),  # a name alone
                   "--attach", str(tmp_path / "old.eml"))  # message/rfc822 may not be base64: sent as bytes
    assert done.returncode == cli.EXIT_OK, done.stderr
    parts = list(server.messages[0].message.iter_attachments())
    assert [(part.get_content_type(), part.get_filename()) for part in parts] == [
        ("text/calendar", "invite.ics"),
        ("text/csv", "data.csv"),
        ("text/csv", "报告.csv"),
        ("application/octet-stream", "old.eml"),
    ]
    assert parts[0].get_payload(decode=True) == b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n"


def test_attach_name_names_stdin(server: LocalSMTPServer) -> None:
    done = run_cli("send", "--server", at(server), *BASE, "--attach-type", "application/pdf",
                   "--attach-name", "scan.pdf", "--attach", "-", stdin=b"%PDF-1.4 from stdin")
    assert done.returncode == cli.EXIT_OK, done.stderr
    [part] = server.messages[0].message.iter_attachments()
    assert (part.get_content_type(), part.get_filename()) == ("application/pdf", "scan.pdf")
    assert part.get_payload(decode=True) == b"%PDF-1.4 from stdin"


@pytest.mark.parametrize(("args", "says"), [
    (("--attach-type", "text/plain"), "--attach-type text/plain applies to the next --attach"),
    (("--attach", "{file}", "--attach-name", "late.txt"), "--attach-name late.txt applies to the next --attach"),
    (("--attach-type", "text/plain", "--attach-type", "text/html", "--attach", "{file}"), "given twice"),
    (("--attach-type", "pdf", "--attach", "{file}"), "type/subtype"),
    (("--attach-type", "multipart/mixed", "--attach", "{file}"), "RFC 2045"),
    (("--attach-type", "message/rfc822", "--attach", "{file}"), "RFC 2045"),
    (("--attach-name", "a\nb", "--attach", "{file}"), "control characters"),
])
def test_bad_attach_options_give_exit_2(args: tuple[str, ...], says: str, tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("x")
    done = run_cli("send", "--dry-run", *BASE, *(arg.format(file=tmp_path / "f.txt") for arg in args))
    assert done.returncode == cli.EXIT_USAGE, done.stdout
    errors = [line for line in text(done.stderr).splitlines() if "error:" in line]
    assert len(errors) == 1 and says in errors[0], done.stderr


# -- swaks' defaults: From $USER@hostname, subject and body --------------------------------------


@pytest.fixture
def box(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """This process as user alice on host box.example.org (getpass.getuser reads LOGNAME first)."""
    monkeypatch.setenv("LOGNAME", "alice")
    monkeypatch.setattr(socket, "gethostname", lambda: "box.example.org")
    return monkeypatch


def test_bare_send_uses_swaks_defaults(server: LocalSMTPServer, box: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = main(capsys, "send", "--server", at(server), "--to", RCPT)
    assert code == cli.EXIT_OK, err
    assert f"accepted  <{RCPT}>" in out
    [received] = server.messages
    assert received.mail_from == "alice@box.example.org"
    msg = received.message
    assert msg["From"] == "alice@box.example.org"
    assert msg["Message-ID"].endswith("@box.example.org>")
    subject = msg["Subject"]
    assert subject == f"test {msg['Date']}"  # swaks: "test <the Date header>"
    assert email.utils.parsedate_to_datetime(subject.removeprefix("test ")) is not None
    assert msg.get_content() == "This is a test mailing\r\n"


def test_default_sender_on_a_host_without_a_dot(server: LocalSMTPServer, box: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    box.setattr(socket, "gethostname", lambda: "localhost")  # user@localhost is a valid mailbox
    code, _, err = main(capsys, "send", "--server", at(server), "--to", RCPT)
    assert code == cli.EXIT_OK, err
    assert server.messages[0].mail_from == "alice@localhost"


def no_user() -> str:
    raise OSError("No username set in the environment")  # what getpass.getuser raises for an unknown uid


@pytest.mark.parametrize(("user", "host"), [("two words", "box.example.org"), ("alice", "under_score"),
                                            (None, "box.example.org")])
def test_an_invalid_default_sender_asks_for_from(server: LocalSMTPServer, box: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str], user: str | None,
                                                 host: str) -> None:
    if user is None:
        box.setattr(getpass, "getuser", no_user)
    else:
        box.setenv("LOGNAME", user)
    box.setattr(socket, "gethostname", lambda: host)
    code, out, err = main(capsys, "send", "--server", at(server), "--to", RCPT)
    assert code == cli.EXIT_USAGE
    [error] = [line for line in err.splitlines() if "error:" in line]
    assert "no --from given" in error and "give --from" in error
    assert out == "" and server.messages == [] and peers(server) == []


def test_given_subject_body_and_subject_header_replace_the_defaults(server: LocalSMTPServer) -> None:
    done = run_cli("send", "--server", at(server), "--from", SENDER, "--to", RCPT, "--header", "Subject: mine")
    assert done.returncode == cli.EXIT_OK, done.stderr
    done = run_cli("send", "--server", at(server), "--from", SENDER, "--to", RCPT, "--subject", "", "--body", "")
    assert done.returncode == cli.EXIT_OK, done.stderr
    first, second = (received.message for received in server.messages)
    assert first.get_all("Subject") == ["mine"]
    assert first.get_content() == "This is a test mailing\r\n"
    assert second.get_all("Subject") == [""]
    assert second.get_content() == "\r\n"


# -- --output-file, --version, --header ------------------------------------------------------------


def test_output_file_holds_the_transcript_instead_of_stdout(server: LocalSMTPServer, tmp_path: Path) -> None:
    path = tmp_path / "session.txt"
    path.write_text("old content\n")
    done = run_cli("send", "--server", at(server), *BASE, "--trace", "--output-file", str(path))
    assert done.returncode == cli.EXIT_OK, done.stderr
    transcript = path.read_text(encoding="utf-8")
    assert "old content" not in transcript
    for line in (f"C: MAIL FROM:<{SENDER}>", f"C: RCPT TO:<{RCPT}>", "C: DATA", "C: QUIT", "S: 221"):
        assert line in transcript
    assert "\x1b[" not in transcript  # never coloured
    out = text(done.stdout)
    assert "MAIL FROM" not in out  # instead of stdout: only the report is there
    assert f"accepted  <{RCPT}>: 250" in out


def test_output_file_gets_the_transcript_of_a_failed_session(tmp_path: Path) -> None:
    path = tmp_path / "session.txt"
    handler = PeerHandler(refuse={RCPT: "550 5.1.1 no such user"})
    with LocalSMTPServer(handler=handler) as running:
        done = run_cli("send", "--server", at(running), *BASE, "--output-file", str(path))  # no --trace needed
    assert done.returncode == cli.EXIT_REFUSED
    transcript = path.read_text(encoding="utf-8")
    assert f"C: RCPT TO:<{RCPT}>" in transcript and "S: 550 5.1.1 no such user" in transcript
    assert "RCPT TO" not in text(done.stdout)


@pytest.mark.parametrize("extra", [(), ("--dry-run",)])
def test_output_file_that_cannot_be_used_gives_exit_2(server: LocalSMTPServer, tmp_path: Path,
                                                      extra: tuple[str, ...]) -> None:
    target = tmp_path / "missing" / "t.txt" if not extra else tmp_path / "t.txt"
    done = run_cli("send", "--server", at(server), *BASE, "--output-file", str(target), *extra)
    assert done.returncode == cli.EXIT_USAGE
    assert "--output-file" in text(done.stderr)
    assert peers(server) == [] and not target.exists()


@pytest.mark.parametrize("command", [(), ("send",)])
def test_version(command: tuple[str, ...]) -> None:
    done = run_cli(*command, "--version")
    assert done.returncode == 0
    assert text(done.stdout) == f"smtp-fsm {smtp_fsm.__version__}\n"


@pytest.mark.parametrize("header", ["X-Evil: a\r\nBcc: victim@example.org", "X-Evil: a\nb", "X-Evil: a\rb"])
def test_header_with_cr_or_lf_gives_exit_2_with_one_line(header: str) -> None:
    done = run_cli("send", "--dry-run", *BASE, "--header", header)
    assert done.returncode == cli.EXIT_USAGE and done.stdout == b""
    errors = [line for line in text(done.stderr).splitlines() if "error:" in line]
    assert errors == ["smtp-fsm send: error: argument --header: a header cannot hold CR or LF: it would end the "
                      "header and start another"]


def test_header_and_timeout_still_work(server: LocalSMTPServer) -> None:
    done = run_cli("send", "--server", at(server), *BASE, "--header", "X-Test: swaks", "--timeout", "5")
    assert done.returncode == cli.EXIT_OK, done.stderr
    assert server.messages[0].message["X-Test"] == "swaks"


# -- help ----------------------------------------------------------------------------------------


def test_send_help_lists_the_swaks_options() -> None:
    out = text(run_cli("send", "--help").stdout)
    for option in ("-4", "-6", "--local-interface", "--helo", "--tls-sni", "--tls-cert", "--tls-key", "--insecure",
                   "--attach-type", "--attach-name", "--output-file", "--version", "--header", "--timeout"):
        assert f"{option} " in out or f"{option}," in out, option


@pytest.mark.parametrize("command", ["send", "demo", "diagram", "trace"])
def test_each_command_shows_two_or_three_examples(command: str) -> None:
    out = text(run_cli(command, "--help").stdout)
    examples = out.split("examples:\n", 1)[1].split("\n\n")
    lines = "\n".join(examples).replace("\\\n", " ").splitlines()  # join continued lines
    commands = [line for line in lines if "smtp-fsm " in line and not line.lstrip().startswith("#")
                and "exit codes" not in line]
    assert 2 <= len(commands) <= 3, commands


def test_top_level_help_points_to_the_exit_codes() -> None:
    out = text(run_cli("--help").stdout)
    assert "exit codes: see `smtp-fsm send --help`" in out
    assert "6  protocol error" not in out


# -- --quit-after -----------------------------------------------------------------------------------


def test_quit_after_rcpt_probes_recipients_and_sends_nothing() -> None:
    handler = RecordingHandler(refuse={"nobody@example.org": "550 5.1.1 no such user"})
    with LocalSMTPServer(handler=handler) as running:
        done = run_cli("send", "--server", at(running), "--from", SENDER, "--to", RCPT, "--to", "nobody@example.org",
                       "--quit-after", "rcpt", "--trace")
        out = text(done.stdout)
        assert done.returncode == cli.EXIT_SOME_REFUSED, done.stderr
        assert f"accepted  <{RCPT}>" in out and "refused   <nobody@example.org>: 550 5.1.1 no such user" in out
        assert "1 of 2 recipient(s) accepted; nothing sent (--quit-after rcpt)" in out
        assert "C: QUIT" in out and "C: DATA" not in out and "C: BDAT" not in out
        assert running.messages == [] and handler.commands[-2:] == [f"RCPT {RCPT}", "RCPT nobody@example.org"]
        # swaks' alias, every recipient accepted: exit 0
        done = run_cli("send", "--server", at(running), "--from", SENDER, "--to", RCPT, "--quit-after", "to")
        assert done.returncode == cli.EXIT_OK and "1 of 1 recipient(s) accepted" in text(done.stdout)
        assert running.messages == []


def test_quit_after_mail_probes_the_sender_only() -> None:
    with LocalSMTPServer() as running:
        done = run_cli("send", "--server", at(running), *BASE, "--quit-after", "from", "--trace")
        out = text(done.stdout)
        assert done.returncode == cli.EXIT_OK, done.stderr
        assert f"sender <{SENDER}> accepted; nothing sent" in out
        assert "C: MAIL FROM:" in out and "C: RCPT" not in out and "C: QUIT" in out
        assert running.messages == []


def test_quit_after_a_refused_recipient_set_is_a_refusal() -> None:
    handler = RecordingHandler(refuse={RCPT: "550 5.1.1 no such user"})
    with LocalSMTPServer(handler=handler) as running:
        done = run_cli("send", "--server", at(running), *BASE, "--quit-after", "rcpt")
        assert done.returncode == cli.EXIT_REFUSED
        assert "550 5.1.1" in text(done.stdout) + text(done.stderr)


@pytest.mark.parametrize(("point", "last_client_line"), [("connect", None), ("banner", None), ("ehlo", "EHLO"),
                                                         ("helo", "EHLO")])
def test_quit_after_a_setup_point(point: str, last_client_line: str | None) -> None:
    with LocalSMTPServer() as running:
        done = run_cli("send", "--server", at(running), *BASE, "--quit-after", point, "--trace")
        out = text(done.stdout)
        assert done.returncode == cli.EXIT_OK, done.stderr
        assert f"stopped after {cli._STOP_POINTS[point]} (--quit-after): nothing sent" in out
        sent = [line.split("C: ", 1)[1] for line in out.splitlines() if "C: " in line]
        assert sent[-1] == "QUIT" and all(not line.startswith("MAIL") for line in sent)
        assert (sent[0].split()[0] if len(sent) > 1 else None) == last_client_line
        assert running.messages == []


def test_quit_after_tls_stops_right_after_the_handshake(pki: PKI) -> None:
    with LocalSMTPServer(starttls_context=server_context(pki)) as running:
        done = run_cli("send", "--server", at(running), "--cafile", str(pki.cafile), *BASE, "--quit-after", "tls",
                       "--trace")
        out = text(done.stdout)
        assert done.returncode == cli.EXIT_OK, done.stderr
        sent = [line.split("C: ", 1)[1] for line in out.splitlines() if "C: " in line]
        assert sent == ["EHLO [127.0.0.1]", "STARTTLS", "QUIT"]
    with LocalSMTPServer() as plain:  # no STARTTLS offered: nothing to stop after, a TLS failure (exit 3)
        done = run_cli("send", "--server", at(plain), *BASE, "--quit-after", "tls")
        assert done.returncode == cli.EXIT_CONNECT and "STARTTLS" in text(done.stderr)


def test_quit_after_auth_stops_after_235() -> None:
    with LocalSMTPServer(credentials={"alice": "secret"}, auth_require_tls=False) as running:
        done = run_cli("send", "--server", at(running), *BASE, "--auth-user", "alice", "--auth-password-env", "PW",
                       "--quit-after", "auth", "--trace", env={"PW": "secret"})
        out = text(done.stdout)
        assert done.returncode == cli.EXIT_OK, done.stderr
        sent = [line.split("C: ", 1)[1] for line in out.splitlines() if "C: " in line]
        assert sent[-1] == "QUIT" and not any(line.startswith("MAIL") for line in sent)
        assert "secret" not in out and running.messages == []


@pytest.mark.parametrize(("extra", "message"), [
    ((), "--quit-after auth needs --auth-user"),
    (("--starttls", "never"), "--quit-after tls with --starttls never"),
])
def test_quit_after_points_that_cannot_be_reached_are_usage_errors(extra: tuple[str, ...], message: str) -> None:
    point = "auth" if "auth" in message else "tls"
    done = run_cli("send", "--server", "127.0.0.1:9", *BASE, "--quit-after", point, *extra)
    assert done.returncode == cli.EXIT_USAGE and message in text(done.stderr)


def test_quit_after_unknown_point_is_a_usage_error() -> None:
    done = run_cli("send", "--server", "127.0.0.1:9", *BASE, "--quit-after", "data")
    assert done.returncode == cli.EXIT_USAGE and "--quit-after" in text(done.stderr)
