"""Sans-IO AUTH (RFC 4954) byte for byte: PLAIN, LOGIN, CRAM-MD5, XOAUTH2, cancel, failures, and secrecy."""

from __future__ import annotations

import base64
import logging

import pytest
from sansio_helpers import GREETING, ehlo, reply, stepper

from smtp_fsm import Authenticated, AuthenticationError, LocalProtocolError, SessionReady
from smtp_fsm.auth import Credentials
from smtp_fsm.testing import SessionStepper, Stepped
from smtp_fsm.trace import MASK

USER = "user@example.org"
PASSWORD = "s3cret-Pa55"
TOKEN = "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"
OK_235 = reply(235, "2.7.0 Authentication successful")
#: RFC 2195 §2's worked example: challenge, user, password and the expected keyed MD5 digest.
CRAM_CHALLENGE = b"<1896.697170952@postoffice.reston.mci.net>"
CRAM_USER = "tim"
CRAM_PASSWORD = "tanstaaftanstaaf"
CRAM_DIGEST = "b913a602c7eda7a495b4e6e7334d3890"
XOAUTH2_ERROR = base64.b64encode(b'{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}').decode()


def b64(data: bytes | str) -> bytes:
    return base64.b64encode(data.encode() if isinstance(data, str) else data)


def _start(offered: str, **options: object) -> tuple[SessionStepper, Stepped]:
    options.setdefault("username", USER)
    options.setdefault("loopback", True)
    h = stepper(**options)
    h.feed(GREETING)
    return h, h.feed(ehlo(f"AUTH {offered}", "PIPELINING"))


def _authenticated(step: Stepped, mechanism: str) -> None:
    assert step.state == "ready" and step.sent == b""
    [event] = step.of(Authenticated)
    assert event.mechanism == mechanism and event.reply.code == 235
    assert step.of(SessionReady)[0].authenticated_as is not None


def test_plain_initial_response() -> None:
    h, step = _start("PLAIN", password=PASSWORD)
    assert step.sent == b"AUTH PLAIN " + b64(f"\0{USER}\0{PASSWORD}") + b"\r\n"
    assert step.state == "auth"
    _authenticated(h.feed(OK_235), "PLAIN")


def test_plain_with_empty_password_still_sends_the_initial_response() -> None:
    _, step = _start("PLAIN", password="")
    assert step.sent == b"AUTH PLAIN " + b64(f"\0{USER}\0") + b"\r\n"


def test_login_exchange() -> None:
    h, step = _start("LOGIN", password=PASSWORD)
    assert step.sent == b"AUTH LOGIN\r\n"
    step = h.feed(reply(334, "VXNlcm5hbWU6"))  # "Username:"
    assert step.sent == b64(USER) + b"\r\n" and step.state == "auth_response"
    step = h.feed(reply(334, "UGFzc3dvcmQ6"))  # "Password:"
    assert step.sent == b64(PASSWORD) + b"\r\n" and step.state == "auth_response"
    _authenticated(h.feed(OK_235), "LOGIN")


def test_login_third_challenge_is_cancelled() -> None:
    h, _ = _start("LOGIN", password=PASSWORD)
    h.feed(reply(334, "VXNlcm5hbWU6"))
    h.feed(reply(334, "UGFzc3dvcmQ6"))
    step = h.feed(reply(334, "QWdhaW46"))
    assert step.sent == b"*\r\n" and step.state == "auth_cancel"


def test_cram_md5_with_the_rfc_2195_example() -> None:
    h, step = _start("CRAM-MD5", username=CRAM_USER, password=CRAM_PASSWORD)
    assert step.sent == b"AUTH CRAM-MD5\r\n"
    step = h.feed(b"334 " + b64(CRAM_CHALLENGE) + b"\r\n")
    assert step.sent == b64(f"{CRAM_USER} {CRAM_DIGEST}") + b"\r\n"
    assert step.sent == b"dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw\r\n"
    _authenticated(h.feed(OK_235), "CRAM-MD5")


def test_xoauth2_initial_response() -> None:
    h, step = _start("XOAUTH2", oauth_token=TOKEN)
    assert step.sent == b"AUTH XOAUTH2 " + b64(f"user={USER}\x01auth=Bearer {TOKEN}\x01\x01") + b"\r\n"
    _authenticated(h.feed(OK_235), "XOAUTH2")


def test_xoauth2_error_334_gets_an_empty_line_then_535() -> None:
    h, _ = _start("XOAUTH2", oauth_token=TOKEN)
    step = h.feed(f"334 {XOAUTH2_ERROR}\r\n".encode())
    assert step.sent == b"\r\n" and step.state == "auth_response"
    step = h.feed(reply(535, "5.7.8 Username and Password not accepted"))
    assert step.sent == b"QUIT\r\n"
    assert isinstance(step.error, AuthenticationError) and step.error.code == 535
    assert step.error.reply.enhanced_code == "5.7.8"


@pytest.mark.parametrize("challenge", ["not base64!", "====", "a", "VXNlcm5hbWU6\tjunk"])
def test_malformed_challenge_is_cancelled_with_star(challenge: str) -> None:
    h, _ = _start("LOGIN", password=PASSWORD)
    step = h.feed(reply(334, challenge))
    assert step.sent == b"*\r\n" and step.state == "auth_cancel"
    step = h.feed(reply(501, "5.7.0 cancelled"))
    assert step.sent == b"QUIT\r\n"
    assert isinstance(step.error, AuthenticationError) and step.error.code == 501
    assert h.feed(reply(221, "bye")).state == "closed"


def test_challenge_to_plain_is_cancelled() -> None:
    h, _ = _start("PLAIN", password=PASSWORD)
    assert h.feed(reply(334, "")).sent == b"*\r\n"


@pytest.mark.parametrize("code", [535, 534, 538, 454, 500, 501])
@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_refusal_raises_authentication_error_carrying_the_reply(code: int, mechanism: str) -> None:
    h, _ = _start(mechanism, password=PASSWORD)
    if mechanism == "LOGIN":
        h.feed(reply(334, "VXNlcm5hbWU6"))
        h.feed(reply(334, "UGFzc3dvcmQ6"))
    step = h.feed(reply(code, "5.7.8 Authentication credentials invalid"))
    assert step.sent == b"QUIT\r\n" and step.state == "quit"
    error = step.error
    assert isinstance(error, AuthenticationError) and error.code == code and error.reply.code == code
    assert PASSWORD not in str(error)
    step = h.feed(b"")
    assert step.state == "closed" and step.errors == ()


@pytest.mark.parametrize(
    ("offered", "options", "chosen"),
    [
        ("PLAIN LOGIN CRAM-MD5", {"password": PASSWORD}, b"AUTH CRAM-MD5\r\n"),
        ("LOGIN PLAIN", {"password": PASSWORD}, b"AUTH PLAIN "),
        ("LOGIN", {"password": PASSWORD}, b"AUTH LOGIN\r\n"),
        ("PLAIN XOAUTH2", {"oauth_token": TOKEN}, b"AUTH XOAUTH2 "),
        ("PLAIN LOGIN CRAM-MD5", {"password": PASSWORD, "auth_mechanism": "login"}, b"AUTH LOGIN\r\n"),
        ("plain", {"password": PASSWORD}, b"AUTH PLAIN "),
    ],
)
def test_mechanism_choice(offered: str, options: dict[str, str], chosen: bytes) -> None:
    _, step = _start(offered, **options)
    assert step.sent.startswith(chosen)


def test_old_auth_equals_syntax() -> None:
    h = stepper(username=USER, password=PASSWORD, loopback=True)
    h.feed(GREETING)
    step = h.feed(ehlo("AUTH=LOGIN"))
    assert step.sent == b"AUTH LOGIN\r\n"


@pytest.mark.parametrize(
    ("offered", "options"),
    [
        ("LOGIN PLAIN", {"password": PASSWORD, "auth_mechanism": "CRAM-MD5"}),
        ("PLAIN", {"oauth_token": TOKEN}),
        ("XOAUTH2", {"password": PASSWORD}),
    ],
)
def test_no_usable_mechanism_sends_no_auth(offered: str, options: dict[str, str]) -> None:
    _, step = _start(offered, **options)
    assert step.sent == b"QUIT\r\n"
    assert isinstance(step.error, AuthenticationError)


def test_no_auth_offered_sends_no_auth() -> None:
    h = stepper(username=USER, password=PASSWORD, loopback=True)
    h.feed(GREETING)
    step = h.feed(ehlo("PIPELINING"))
    assert step.sent == b"QUIT\r\n" and isinstance(step.error, AuthenticationError)


@pytest.mark.parametrize(
    ("mechanism", "options"),
    [("PLAIN", {"password": PASSWORD}), ("LOGIN", {"password": PASSWORD}),
     ("CRAM-MD5", {"password": PASSWORD}), ("XOAUTH2", {"oauth_token": TOKEN})],
)
def test_auth_in_clear_to_a_remote_host_raises_before_any_auth_byte(mechanism: str, options: dict[str, str]) -> None:
    _, step = _start(mechanism, loopback=False, **options)
    assert step.sent == b"QUIT\r\n"
    assert isinstance(step.error, LocalProtocolError)
    _, step = _start(mechanism, loopback=False, allow_insecure_auth=True, **options)
    assert step.sent.startswith(f"AUTH {mechanism}".encode()) and step.errors == ()
    _, step = _start(mechanism, loopback=False, encrypted=True, **options)
    assert step.sent.startswith(f"AUTH {mechanism}".encode()) and step.errors == ()


# --- secrets never shown ---------------------------------------------------------------------

SECRETS = [PASSWORD, TOKEN, b64(PASSWORD).decode(), b64(TOKEN).decode(), b64(f"\0{USER}\0{PASSWORD}").decode(),
           b64(f"user={USER}\x01auth=Bearer {TOKEN}\x01\x01").decode()]


def _script(mechanism: str) -> list[bytes]:
    if mechanism == "LOGIN":
        return [reply(334, "VXNlcm5hbWU6"), reply(334, "UGFzc3dvcmQ6"), reply(535, "5.7.8 no")]
    if mechanism == "CRAM-MD5":
        return [b"334 " + b64(CRAM_CHALLENGE) + b"\r\n", reply(535, "5.7.8 no")]
    if mechanism == "XOAUTH2":
        return [f"334 {XOAUTH2_ERROR}\r\n".encode(), reply(535, "5.7.8 no")]
    return [reply(535, "5.7.8 no")]


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2"])
def test_credentials_never_in_reprs_errors_trace_or_logs(mechanism: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="smtp_fsm")
    secret = {"oauth_token": TOKEN} if mechanism == "XOAUTH2" else {"password": PASSWORD}
    h, first = _start(mechanism, trace=True, **secret)
    shown = [repr(h.session), str(first.errors)]
    for data in _script(mechanism):
        step = h.feed(data)
        shown += [repr(h.session), repr(step.events), *(str(e) for e in step.errors), *(repr(e) for e in step.errors)]
    assert h.state == "quit"
    trace = h.session.trace
    assert trace is not None and trace
    shown += [repr(step) for step in trace]
    shown += [step.sent.decode("utf-8", "replace") for step in trace]
    shown.append(caplog.text)
    everything = "\n".join(shown)
    for secret_text in SECRETS:
        assert secret_text not in everything
    if mechanism in ("PLAIN", "XOAUTH2"):
        assert any(MASK in step.sent and step.sent.startswith(b"AUTH") for step in trace)
    else:
        assert any(step.sent == MASK + b"\r\n" for step in trace)


def test_credentials_repr_is_masked() -> None:
    text = repr(Credentials(USER, PASSWORD, TOKEN))
    assert PASSWORD not in text and TOKEN not in text
