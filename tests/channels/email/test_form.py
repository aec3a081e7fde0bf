"""The web form (channels/email/form.py) on the service layer with a virtual clock: a valid
submission becomes a committed task (request number, ack, pre-qualification) before the 2xx;
validation errors (400, all at once), size (413), rate limits per address and per client
(429), the honeypot (accepted, logged, not queued), hostile values kept out of headers."""

from __future__ import annotations

import json
from email import message_from_bytes, policy
from urllib.parse import urlencode

import pytest
from twisted.internet.defer import Deferred
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from channels.email.config import EmailSettings
from channels.email.form import ContactForm, RateLimit, forms_resource, parse_types
from dispatcher.domain.errors import InvalidValue
from dispatcher.domain.queues import Queue
from dispatcher.service.codification import Codification
from dispatcher.service.mail import Mail
from dispatcher.storage.codification import MemoryCodificationStore
from tests.dispatcher.service.stacks import Stack, build_stack, result, support_queue

TYPES = "complaint=support:50:complaint,quote=sales::sales"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def stack() -> Stack:
    s = build_stack()
    s.put_queue(support_queue())
    return s


@pytest.fixture
def mail(stack: Stack) -> Mail:
    stack.put_queue(Queue("sales"))
    service = Mail(stack.assignment, stack.store, stack.clock, stack.intake)
    codi = Codification(stack.assignment, stack.store, MemoryCodificationStore(), stack.clock,
                        stack.intake, stack.configuration)
    stack.wait(codi.start())
    service.codify_with(codi)
    return service


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def form(mail: Mail, clock: Clock) -> ContactForm:
    settings = EmailSettings(form_types=TYPES, form_products="Router X2,Phone 7",
                             form_per_address_per_hour=2, form_per_ip_per_hour=3,
                             form_max_bytes=4096)
    return ContactForm(mail, settings, "support", clock=clock)


GOOD = {"name": "Alice Martin", "email": "alice@customer.org", "phone": "+32 2 555 01 00",
        "subject": "Broken router", "message": "It blinks red.", "product": "Router X2",
        "request_type": "complaint"}


def post(form: ContactForm, fields: dict | None = None, as_json: bool = False,
         ip: str = "192.0.2.1", body: bytes | None = None) -> DummyRequest:
    request = DummyRequest([b"contact"])
    request.method = b"POST"
    request.client = type("Address", (), {"host": ip})()
    request.getClientAddress = lambda: request.client
    if body is None:
        data = GOOD if fields is None else fields
        body = json.dumps(data).encode() if as_json else urlencode(data).encode()
    ctype = b"application/json" if as_json else b"application/x-www-form-urlencoded"
    request.requestHeaders.setRawHeaders(b"content-type", [ctype])
    request.requestHeaders.setRawHeaders(b"content-length", [str(len(body)).encode()])
    from io import BytesIO

    request.content = BytesIO(body)
    out = form.render(request)
    if out is not NOT_DONE_YET:
        request.write(out)
        request.finish()
    return request


def answer(request: DummyRequest) -> tuple[int, dict | str]:
    body = b"".join(request.written).decode()
    code = request.responseCode or 200
    try:
        return code, json.loads(body)
    except ValueError:
        return code, body


def tasks(stack: Stack) -> list:
    return list(stack.router.tasks.values())


def test_a_submission_becomes_a_prequalified_acknowledged_task(stack, form) -> None:
    request = post(form, as_json=True)
    assert request.finished
    code, data = answer(request)
    assert (code, data) == (200, {"status": "received", "request": "SB-000001"})
    [task] = tasks(stack)
    assert (task.queue, task.priority, task.attributes["category"]) == ("support", 50,
                                                                       "complaint")
    msgs = result(stack.store.mail_messages(task.id))
    assert [m.kind for m in msgs] == ["customer", "ack"]  # acknowledged like an e-mail
    raw = message_from_bytes(msgs[0].raw, policy=policy.default)
    assert raw["From"].addresses[0].addr_spec == "alice@customer.org"
    assert raw["X-Switchboard-Form"] == "contact"
    assert "Router X2" in msgs[0].text


def test_the_answer_waits_for_the_commit(stack, form, mail) -> None:
    held: list[Deferred] = []
    receive = mail.receive

    def slow(inbound):
        d: Deferred = Deferred()
        held.append((receive(inbound), d))
        return d

    mail.receive = slow
    request = post(form)
    assert not request.finished and not request.written
    done, d = held[0]
    d.callback(result(done))
    assert request.finished and answer(request)[0] == 200


def test_a_failed_commit_is_503_and_not_a_2xx(stack, form, mail) -> None:
    from twisted.internet.defer import fail

    mail.receive = lambda inbound: fail(RuntimeError("database down"))
    code, data = answer(post(form, as_json=True))
    assert code == 503 and data["error"] == "unavailable"


def test_request_type_and_call_back_set_queue_and_priority(stack, form) -> None:
    post(form, {**GOOD, "request_type": "quote", "callback": "yes"})
    [task] = tasks(stack)
    assert (task.queue, task.priority, task.attributes["category"]) == ("sales", 60, "sales")
    assert task.attributes["form"] == {"name": "Alice Martin", "phone": "+32 2 555 01 00",
                                       "product": "Router X2", "request_type": "quote",
                                       "callback": "yes"}


def test_every_invalid_field_is_reported_at_once(stack, form) -> None:
    bad = {"name": "", "email": "alice@customer.org\r\nBcc: x@evil.org", "phone": "call me",
           "subject": "s" * 201, "message": "", "product": "Toaster",
           "request_type": "hack"}
    code, data = answer(post(form, bad, as_json=True))
    assert code == 400 and set(data["fields"]) == {
        "name", "email", "phone", "subject", "message", "product", "request_type"}
    code, page = answer(post(form, bad))
    assert code == 400 and "Please correct" in page and "<script" not in page
    assert tasks(stack) == []


def test_call_back_needs_a_phone(stack, form) -> None:
    code, data = answer(post(form, {**GOOD, "phone": "", "callback": "on"}, as_json=True))
    assert code == 400 and "phone" in data["fields"]


def test_too_large_is_413_before_parsing(stack, form) -> None:
    code, _ = answer(post(form, {**GOOD, "message": "x" * 5000}))
    assert code == 413 and tasks(stack) == []
    code, _ = answer(post(form, body=b"{" * 5000, as_json=True))
    assert code == 413


def test_garbage_bodies_are_400(stack, form) -> None:
    assert answer(post(form, body=b"[1, 2]", as_json=True))[0] == 400
    assert answer(post(form, body=b"\xff\xfe", as_json=False))[0] == 400
    assert answer(post(form, body=b'{"name": {"x": 1}}', as_json=True))[0] == 400


def test_rate_limits_per_address_and_per_client(stack, form, clock) -> None:
    assert answer(post(form, as_json=True))[0] == 200
    assert answer(post(form, as_json=True, ip="192.0.2.2"))[0] == 200
    request = post(form, as_json=True, ip="192.0.2.3")  # third for this address in the hour
    assert answer(request)[0] == 429
    assert int(request.responseHeaders.getRawHeaders(b"retry-after")[0]) > 0
    other = {**GOOD, "email": "bob@customer.org"}
    assert answer(post(form, other, as_json=True, ip="192.0.2.1"))[0] == 200
    who = {**GOOD, "email": "carl@customer.org"}
    assert answer(post(form, who, as_json=True, ip="192.0.2.1"))[0] == 200
    assert answer(post(form, {**GOOD, "email": "dan@c.org"}, as_json=True))[0] == 429  # IP
    assert len(tasks(stack)) == 4
    clock.now += 3601
    assert answer(post(form, as_json=True))[0] == 200


def test_the_honeypot_is_answered_but_not_queued(stack, form, caplog) -> None:
    code, data = answer(post(form, {**GOOD, "website": "http://spam.example"}, as_json=True))
    assert (code, data) == (200, {"status": "received"})
    assert tasks(stack) == [] and "honeypot" in caplog.text


def test_the_sample_form_is_served(form) -> None:
    request = DummyRequest([b""])
    page = form.render(request).decode()
    assert 'action="/forms/contact"' in page and 'name="website"' in page
    assert '<option value="quote">' in page and "Router X2" in page
    assert forms_resource(None, EmailSettings(), "support").getStaticEntity(b"contact")


def test_the_type_mapping_is_checked() -> None:
    assert parse_types(TYPES)["quote"].priority is None
    for spec in ("x", "x=a:b:c", "x=a:500:c", "x=a:1:c:d", "x=a:1:bad name"):
        with pytest.raises(InvalidValue):
            parse_types(spec)


def test_rate_limit_window_slides() -> None:
    limit = RateLimit(2, 10.0)
    assert limit.retry_after("k", 0.0) == 0 and limit.retry_after("k", 1.0) == 0
    assert limit.retry_after("k", 2.0) == 8.0
    assert limit.retry_after("k", 10.5) == 0
