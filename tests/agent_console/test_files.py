"""The files behind a conversation (agent_console/files.py), on twisted.web's request doubles:
signed links that nobody can alter or reuse late, the HTML body with its own CSP, attachments
as downloads, and the agent's uploads (token, role, an enabled account, size, answered after
the store)."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest
from twisted.internet.defer import fail, succeed
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from agent_console.config import ConsoleSettings
from agent_console.files import Links, MailFiles, Uploads
from dispatcher.domain.errors import Forbidden, InvalidValue
from dispatcher.service.accounts import AccountDisabled
from dispatcher.service.conversation import File, Viewer
from dispatcher.service.tokens import Keys, Signer, Verifier

ANN = Viewer("ann", "agent")
SECRET = b"s" * 64
KEYS = Keys("HS256", SECRET, SECRET)


class Now:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


def args_of(link: str) -> dict[bytes, list[bytes]]:
    query = parse_qs(urlsplit(link).query)
    return {k.encode(): [v.encode() for v in vs] for k, vs in query.items()}


def test_a_link_is_for_one_viewer_message_and_part_and_expires() -> None:
    now = Now()
    links = Links(b"k" * 32, 600, now)
    link = links.link(ANN, "m1", "html", images=True)
    assert links.check(args_of(link)) == (ANN, "m1", "html", True)
    for name, value in ((b"s", b"bob"), (b"r", b"supervisor"), (b"m", b"m2"), (b"p", b"0"),
                        (b"i", b"0"), (b"e", b"9999999999")):
        forged = {**args_of(link), name: [value]}
        with pytest.raises(ValueError):
            links.check(forged)
    with pytest.raises(ValueError):
        Links(b"j" * 32, 600, now).check(args_of(link))  # another process's key
    now.t += 601
    with pytest.raises(ValueError):
        links.check(args_of(link))


class Conversation:
    def __init__(self, allowed: bool = True) -> None:
        self.allowed = allowed

    def html(self, viewer, message_id, inline_url):
        if not self.allowed:
            return fail(Forbidden(viewer.sub, "message"))
        return succeed(f'<p>Hi <img src="{inline_url(0)}"></p>')

    def attachment(self, viewer, message_id, position):
        if not self.allowed:
            return fail(Forbidden(viewer.sub, "message"))
        kinds = {0: ("label.png", "image/png"), 1: ("page.html", "text/html")}
        name, kind = kinds[position]
        return succeed(File(name, kind, b"data"))


def get(resource, link: str) -> DummyRequest:
    request = DummyRequest([b""])
    request.args = args_of(link)
    assert resource.render_GET(request) in (NOT_DONE_YET, b"forbidden\n")
    return request


def header(request: DummyRequest, name: bytes) -> str:
    return request.responseHeaders.getRawHeaders(name)[0].decode()


def test_the_html_body_gets_its_own_policy_and_remote_images_only_when_asked() -> None:
    links = Links()
    resource = MailFiles(Conversation(), links)
    plain = get(resource, links.link(ANN, "m1", "html"))
    body = b"".join(plain.written).decode()
    assert "<p>Hi <img src=\"/console/mail?" in body
    csp = header(plain, b"content-security-policy")
    assert "default-src 'none'" in csp and "sandbox" in csp and "https:" not in csp
    asked = get(resource, links.link(ANN, "m1", "html", images=True))
    assert "https:" in header(asked, b"content-security-policy")


def test_attachments_download_and_only_raster_images_show_inline() -> None:
    links = Links()
    resource = MailFiles(Conversation(), links)
    image = get(resource, links.link(ANN, "m1", "0"))
    assert header(image, b"content-type") == "image/png"
    assert header(image, b"content-disposition").startswith("inline")
    page = get(resource, links.link(ANN, "m1", "1"))
    assert header(page, b"content-type") == "application/octet-stream"
    assert header(page, b"content-disposition") == "attachment; filename*=UTF-8''page.html"
    assert b"".join(page.written) == b"data"


def test_refusals_are_403(caplog) -> None:
    links = Links()
    refused = get(MailFiles(Conversation(allowed=False), links), links.link(ANN, "m1", "0"))
    assert refused.responseCode == 403
    forged = DummyRequest([b""])
    forged.args = {**args_of(links.link(ANN, "m1", "0")), b"s": [b"bob"]}
    assert MailFiles(Conversation(), links).render_GET(forged) == b"forbidden\n"
    assert forged.responseCode == 403
    assert "refused a file link" in caplog.text


class Mail:
    def __init__(self) -> None:
        self.stored: list = []

    def upload(self, owner, filename, content_type, content):
        if not filename:
            return fail(InvalidValue("an attachment needs a file name"))
        self.stored.append((owner, filename, content_type, content))
        return succeed(type("U", (), {"id": "u1", "filename": filename, "size": len(content),
                                       "content_type": content_type})())


def post(resource, token: str | None, body: bytes, name: bytes = b"a.txt",
         origin: bytes | None = None) -> DummyRequest:
    from io import BytesIO

    request = DummyRequest([b""])
    request.method = b"POST"
    request.args = {b"name": [name]}
    request.content = BytesIO(body)
    if token is not None:
        request.requestHeaders.addRawHeader(b"authorization", f"Bearer {token}".encode())
    request.requestHeaders.addRawHeader(b"content-type", b"text/plain")
    request.requestHeaders.addRawHeader(b"content-length", str(len(body)).encode())
    if origin is not None:
        request.requestHeaders.addRawHeader(b"origin", origin)
    out = resource.render_POST(request)
    if out is not NOT_DONE_YET:
        request.written.append(out)
    return request


def test_uploads_need_an_agents_token_and_a_small_enough_file() -> None:
    mail = Mail()
    signer = Signer(KEYS, "switchboard", "switchboard-console")
    settings = ConsoleSettings(max_upload_bytes=10, allowed_origins="http://127.0.0.1:8080")
    resource = Uploads(mail, Verifier(KEYS, "switchboard", "switchboard-console"), settings,
                       Accounts(disabled={"gus"}))
    assert post(resource, None, b"x").responseCode == 401
    assert post(resource, "not-a-token", b"x").responseCode == 401
    assert post(resource, signer.issue("sue", "supervisor"), b"x").responseCode == 403
    agent = signer.issue("ann", "agent")
    assert post(resource, agent, b"x" * 11).responseCode == 413
    assert post(resource, agent, b"x", origin=b"http://evil.test").responseCode == 403
    assert post(resource, agent, b"x", name=b"").responseCode == 400
    ok = post(resource, agent, b"hello", origin=b"http://127.0.0.1:8080")
    assert ok.responseCode == 201
    assert json.loads(b"".join(ok.written)) == {"upload_id": "u1", "name": "a.txt", "size": 5,
                                                "type": "text/plain"}
    assert mail.stored == [("ann", "a.txt", "text/plain", b"hello")]
    assert post(resource, signer.issue("gus", "agent"), b"x").responseCode == 403  # disabled
    assert len(mail.stored) == 1


class Accounts:
    """The accounts' rule at the console (dispatcher.service.accounts.Accounts.admit)."""

    def __init__(self, disabled: set[str]) -> None:
        self.disabled = disabled

    def admit(self, sub, role):
        return fail(AccountDisabled(sub)) if sub in self.disabled else succeed(None)
