"""The settings as objects (SessionOptions, ClientOptions) and the drivers' API written once."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import subprocess
import sys
import textwrap
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

import smtp_fsm
from smtp_fsm import AsyncSMTPClient, ClientOptions, LocalProtocolError, SessionOptions, SMTPClient
from smtp_fsm._driver import API_RETURNS, DriverBase
from smtp_fsm.testing import LocalSMTPServer

ROOT = Path(__file__).resolve().parent.parent


def welcome() -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "shop@example.org", "alice@example.net", "Welcome"
    msg.set_content("Hello Alice!")
    return msg


def test_the_api_is_written_once_and_each_driver_has_it_as_its_own() -> None:
    for name, returns in API_RETURNS.items():
        blocking, awaited = getattr(SMTPClient, name), getattr(AsyncSMTPClient, name)
        # The blocking method is the base's code itself (no extra frame); the asyncio one awaits it.
        assert blocking.__code__ is getattr(DriverBase, name).__code__
        assert not inspect.iscoroutinefunction(blocking) and inspect.iscoroutinefunction(awaited)
        for method, owner in ((blocking, "SMTPClient"), (awaited, "AsyncSMTPClient")):
            assert method.__qualname__ == f"{owner}.{name}" and method.__doc__ == getattr(DriverBase, name).__doc__
            assert inspect.signature(method).return_annotation == returns
            assert inspect.signature(method).parameters == inspect.signature(getattr(DriverBase, name)).parameters


def test_an_autospec_of_the_asyncio_client_has_awaitable_methods() -> None:
    """Test authors mock the client: its API methods must look like coroutine functions."""
    client = mock.create_autospec(AsyncSMTPClient, instance=True)
    assert isinstance(client.send_message, mock.AsyncMock) and isinstance(client.quit, mock.AsyncMock)
    blocking = mock.create_autospec(SMTPClient, instance=True)
    assert not isinstance(blocking.send_message, mock.AsyncMock)


def test_the_keywords_become_options_checked_once() -> None:
    client = SMTPClient("mx.example.net", lmtp=True, username="u", password="s3cret", timeout=5)
    assert client.options == ClientOptions(
        host="mx.example.net", timeout=5, ehlo_from_socket=True,
        session=SessionOptions(local_hostname="[127.0.0.1]", lmtp=True, username="u", password="s3cret"))
    assert client.port == client.options.connect_port == 24 and client.options.tls_server_name == "mx.example.net"
    assert "s3cret" not in repr(client.options) and "username='u'" in repr(client.options)
    assert client.options.session.credentials is not None and client.options.session.credentials.password == "s3cret"
    with pytest.raises(LocalProtocolError, match="port must be"):
        dataclasses.replace(client.options, port=0)  # a variant is checked again
    with pytest.raises(LocalProtocolError, match="starttls must be"):
        SessionOptions(local_hostname="client.example", starttls="maybe")  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match="AUTH mechanism"):
        SessionOptions(local_hostname="client.example", auth_mechanism="KERBEROS")
    with pytest.raises(LocalProtocolError, match="from_options takes ClientOptions"):
        SMTPClient.from_options(client.options.session)  # type: ignore[arg-type]


@pytest.mark.parametrize(("keyword", "value"), [
    ("chunk_size", 0), ("quit_after", "data"), ("local_hostname", "not a name"), ("password", "p")])
def test_the_engine_and_the_drivers_check_the_same_way(keyword: str, value: object) -> None:
    errors = []
    for make, first in ((smtp_fsm.ClientSession, {"local_hostname": "client.example"}),
                        (SMTPClient, {"host": "mx.example.net"}), (AsyncSMTPClient, {"host": "mx.example.net"})):
        with pytest.raises(LocalProtocolError) as caught:
            make(**{**first, keyword: value})  # type: ignore[operator]
        errors.append(str(caught.value))
    assert len(set(errors)) == 1, errors


def test_new_session_and_with_peer_make_engines_alike() -> None:
    options = SessionOptions(local_hostname="client.example", pipelining=False, trace=True)
    first, second = options.new_session(), options.new_session()
    assert first is not second and first.state == second.state == "greeting" and first.trace == []
    peer = options.with_peer(loopback=True, local_hostname="[192.0.2.1]")
    assert peer.loopback and peer.local_hostname == "[192.0.2.1]" and not options.loopback
    assert options.with_peer() is options
    with pytest.raises(LocalProtocolError, match="EHLO name"):
        options.with_peer(local_hostname="bad name")


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_clients_made_from_one_options_object_send(kind: str, smtp_server: LocalSMTPServer) -> None:
    options = ClientOptions(host=smtp_server.host, port=smtp_server.port, timeout=10,
                            session=SessionOptions(local_hostname="client.example", trace=True))
    if kind == "sync":
        for _ in range(2):
            with SMTPClient.from_options(options) as client:
                assert client.send_message(welcome()).ok
                assert client.session.trace and client.options is options
    else:
        async def send_twice() -> None:
            for _ in range(2):
                async with AsyncSMTPClient.from_options(options) as client:
                    assert (await client.send_message(welcome())).ok

        asyncio.run(send_twice())
    assert [m.mail_from for m in smtp_server.messages] == ["shop@example.org"] * 2


TYPED_USER_CODE = '''
import smtp_fsm

async def send(client: smtp_fsm.AsyncSMTPClient, blocking: smtp_fsm.SMTPClient) -> int:
    result: smtp_fsm.SendResult = await client.sendmail("a@example.org", ["b@example.org"], b"x")
    results: list[smtp_fsm.SendResult] = blocking.send_many([("a@example.org", "b@example.org", b"x")])
    reply: smtp_fsm.Reply = await client.noop()
    ended: smtp_fsm.Reply | None = blocking.quit()
    return len(results) + reply.code + (ended.code if ended else 0) + len(result.accepted)

def wrong(blocking: smtp_fsm.SMTPClient) -> smtp_fsm.SendResult:
    return blocking.sendmail("a@example.org", ["b@example.org"], b"x", ret=1)
'''


def test_mypy_sees_each_drivers_own_return_types(tmp_path: Path) -> None:
    source = tmp_path / "user_code.py"
    source.write_text(textwrap.dedent(TYPED_USER_CODE), encoding="utf-8")
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--cache-dir", str(tmp_path / "cache"),
         str(source)], capture_output=True, text=True, timeout=300, cwd=ROOT, check=False)
    # The one error is the wrong option type; every return type above is right for its driver.
    assert checked.returncode == 1 and checked.stdout.count("error:") == 1, checked.stdout
    assert 'Argument "ret" to "sendmail" of "DriverBase" has incompatible type "int"' in checked.stdout, checked.stdout


def test_a_variant_of_the_options_derives_port_name_and_encryption_anew() -> None:
    base = ClientOptions(host="mx1.example.net", session=SessionOptions(local_hostname="client.example"))
    other = SMTPClient.from_options(dataclasses.replace(base, host="mx2.example.net"))
    assert (other.host, other.server_hostname, other.port) == ("mx2.example.net", "mx2.example.net", 25)
    implicit = SMTPClient.from_options(dataclasses.replace(base, tls=True))
    assert implicit.port == 465 and implicit.options.session_options.encrypted
    named = dataclasses.replace(base, server_hostname="smtp.example.net", port=2525)
    assert (named.tls_server_name, named.connect_port) == ("smtp.example.net", 2525)


def test_implicit_tls_from_options_starts_encrypted(smtp_server_factory: Any, tls_certificates: Any) -> None:
    server = smtp_server_factory(implicit_tls_context=tls_certificates.server_context)
    options = ClientOptions(host=server.host, port=server.port, tls=True, tls_context=tls_certificates.client_context,
                            session=SessionOptions(local_hostname="client.example", starttls="required"))
    with SMTPClient.from_options(options) as client:
        assert client.encrypted and client.send_message(welcome()).ok


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_dead_connection_is_reported_before_a_bad_argument(kind: str) -> None:
    """The connection is checked (and what an idle server said taken in) before the arguments."""
    client = SMTPClient("127.0.0.1", 1) if kind == "sync" else AsyncSMTPClient("127.0.0.1", 1)

    async def call() -> None:
        await client.sendmail("a@example.org", [], b"x")  # type: ignore[misc]

    with pytest.raises(LocalProtocolError, match="not connected"):
        if kind == "sync":
            client.sendmail("a@example.org", [], b"x")
        else:
            asyncio.run(call())
