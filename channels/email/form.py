"""Web form intake (pre-qualification): `GET /forms/contact` serves a sample HTML form,
`POST /forms/contact` turns a submission into an e-mail task through `Mail.receive`, so it gets
a request number, an acknowledgement, categorisation and a spam verdict like any mail.

What it promises:
- The answer is 2xx only after the task is committed (the receive Deferred fired); a failed
  commit answers 503 and the visitor may send again.
- The request type (configured `form_types`: type -> queue:priority:category) and "wants a call
  back" (priority at least `form_callback_priority`) set queue, priority and category directly.
- Abuse: a body over `form_max_bytes` is refused with 413 before it is parsed; more than
  `form_per_address_per_hour` submissions for one e-mail address or `form_per_ip_per_hour`
  from one client address get 429 with Retry-After; a filled-in honeypot field is answered as
  if accepted, logged, and not queued; invalid fields get 400 with every problem at once (JSON
  when the request was JSON or asks for it, else an HTML page). Nothing a visitor types reaches
  a header unescaped (the message is built with the `email` package; control characters and
  line separators in a header field become a space, the body keeps them) or the page
  (escaped). JSON bodies are read by the bounded reader (dispatcher.service.wire). Refusals
  are logged at most once a minute (guard.LOG_INTERVAL_SECONDS) per client and reason; an unexpected
  failure is 500 with an `incident` id that is in its one log line.
"""

from __future__ import annotations

import html
import json
import logging
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from email import policy as email_policy
from email.message import EmailMessage
from email.utils import formataddr, make_msgid, parseaddr
from typing import Any
from urllib.parse import parse_qs

from twisted.web import server
from twisted.web.resource import Resource

from dispatcher import net
from dispatcher.domain.categories import Prequalified, check_name
from dispatcher.domain.errors import DomainError, InvalidValue
from dispatcher.domain.tasks import MAX_PRIORITY, MIN_PRIORITY
from dispatcher.guard import Throttled
from dispatcher.service import pages
from dispatcher.service.mail import InboundMail
from dispatcher.service.wire import Incidents, NotJson, read_json

from . import form_callback
from .config import EmailSettings

log = logging.getLogger(__name__)

HOUR = 3600.0
MAX_NAME_CHARS = 200
MAX_SUBJECT_CHARS = 200
MAX_EMAIL_CHARS = 254
MAX_PHONE_CHARS = 32
MAX_CHOICE_CHARS = 100
FIELDS = ("name", "email", "phone", "subject", "message", "product", "request_type",
          "callback", *form_callback.WINDOW_FIELDS)
TRUE = frozenset({"1", "true", "on", "yes"})
_PHONE = re.compile(r"^\+?[0-9 ()./-]{3,}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
JSON_TYPE = b"application/json"
# Control characters (C0, DEL, C1) and the Unicode line and paragraph separators: the `email`
# package refuses them in a header (it splits lines on them), so a header field gets a space
# for each run of them; the body keeps the text as typed.
_NOT_IN_A_HEADER = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


@dataclass(frozen=True)
class RequestType:
    queue: str | None
    priority: int | None
    category: str | None


def parse_types(spec: str) -> dict[str, RequestType]:
    """"complaint=support:50:complaint,quote=sales::sales" -> {type: RequestType}."""
    out: dict[str, RequestType] = {}
    for item in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, target = item.partition("=")
        parts = target.split(":")
        if not sep or not name.strip() or len(parts) > 3:
            raise InvalidValue(f"email.form_types: expected type=queue:priority:category, got "
                               f"{item!r}")
        parts += [""] * (3 - len(parts))
        queue, priority, category = (p.strip() for p in parts)
        try:
            prio = int(priority) if priority else None
        except ValueError:
            raise InvalidValue(f"email.form_types: priority of {name!r} is not a number") from None
        if prio is not None and not MIN_PRIORITY <= prio <= MAX_PRIORITY:
            raise InvalidValue(f"email.form_types: priority of {name!r} out of range")
        out[name.strip()] = RequestType(queue or None, prio,
                                        check_name(category) if category else None)
    return out


class RateLimit:
    """At most `limit` events per key in a sliding `window` (seconds)."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self.seen: dict[str, deque[float]] = {}

    def retry_after(self, key: str, now: float) -> float:
        """0 when an event is allowed now (and counts it), else seconds to wait."""
        times = self.seen.setdefault(key, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(times) >= self.limit:
            return times[0] + self.window - now
        times.append(now)
        if len(self.seen) > 10_000:  # forget idle keys now and then
            for k in [k for k, v in self.seen.items() if not v or v[-1] <= now - self.window]:
                del self.seen[k]
        return 0.0


@dataclass(frozen=True)
class Submission:
    name: str
    email: str
    phone: str
    subject: str
    message: str
    product: str
    request_type: str
    callback: bool
    not_before: float | None = None  # the call back's window (form_callback.py)
    not_after: float | None = None


# The form page's Content-Security-Policy (dispatcher/service/pages.py adds frame-ancestors).
FORM_CSP = pages.policy("style-src 'unsafe-inline'", "form-action 'self'")


class ContactForm(Resource):
    isLeaf = True

    def __init__(self, mail: Any, settings: EmailSettings, queue: str,
                 clock: Callable[[], float] = time.time, callbacks: Any = None) -> None:
        super().__init__()
        self.mail = mail
        self.callbacks = callbacks  # dispatcher.service.callbacks.Callbacks, or None
        self.settings = settings
        self.queue = queue
        self.clock = clock
        self.types = parse_types(settings.form_types)
        self.products = [p.strip() for p in settings.form_products.split(",") if p.strip()]
        self.by_address = RateLimit(settings.form_per_address_per_hour, HOUR)
        self.by_ip = RateLimit(settings.form_per_ip_per_hour, HOUR)
        self.refusals = Throttled(log)  # one line per client and reason
        self.incidents = Incidents(log)

    # ------------------------------------------------------------------ GET

    def render_GET(self, request: server.Request) -> bytes:
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        pages.harden(request, FORM_CSP)  # never framed, no script, posts to itself only
        return page(self.types, self.products, self.settings.form_honeypot).encode()

    # ------------------------------------------------------------------ POST

    def render_POST(self, request: server.Request) -> Any:
        wants_json = _wants_json(request)
        try:
            return self._post(request, wants_json)
        except Exception as exc:  # noqa: BLE001 - the visitor gets an id, the log the trace
            incident = self.incidents.record(exc, self.clock(), "form: a submission from %s"
                                             " failed", _client(request))
            return self._answer(request, 500, wants_json, {
                "error": "internal", "incident": incident,
                "message": f"not stored; please try again (incident {incident})"})

    def _post(self, request: server.Request, wants_json: bool) -> Any:
        length = request.getHeader(b"content-length")
        body = request.content.read(self.settings.form_max_bytes + 1)
        if (length is not None and length.isdigit() and int(length) > self.settings.form_max_bytes
                ) or len(body) > self.settings.form_max_bytes:
            return self._answer(request, 413, wants_json, {"error": "too_large",
                                "message": f"at most {self.settings.form_max_bytes} bytes"})
        try:
            fields = _fields(request, body)
        except ValueError as exc:
            return self._answer(request, 400, wants_json, {"error": "bad_request",
                                                           "message": str(exc)})
        now = self.clock()
        client = _client(request)
        if fields.get(self.settings.form_honeypot, "").strip():
            self.refusals.warning((client, "honeypot"), now, "form: honeypot field filled in"
                                  " from %s: not queued", client)
            return self._answer(request, 200, wants_json, {"status": "received"})
        problems, sub = self._check(fields)
        if problems:
            return self._answer(request, 400, wants_json, {"error": "invalid",
                                                           "fields": problems})
        for limiter, key in ((self.by_ip, f"ip:{client}"),
                             (self.by_address, f"email:{sub.email.lower()}")):
            wait = limiter.retry_after(key, now)
            if wait > 0:
                self.refusals.warning((key, "rate"), now, "form: rate limit for %s", key)
                request.setHeader(b"retry-after", str(int(wait) + 1).encode())
                return self._answer(request, 429, wants_json, {
                    "error": "rate_limited", "message": "too many submissions; try later"})
        d = self.mail.receive(self._inbound(sub, client, now))
        if sub.callback and self.callbacks is not None:
            d.addCallback(self._call_back, sub)
        d.addCallback(lambda got: self._answer(request, 200, wants_json, {
            "status": "received", "request": got.request}, finish=True))
        d.addErrback(self._failed, request, wants_json)
        return server.NOT_DONE_YET

    def _call_back(self, got: Any, sub: Submission) -> Any:
        """The mail is stored: the call back joins the queue as a callback task."""
        kind = self.types.get(sub.request_type)
        d = form_callback.request(
            self.callbacks, number=sub.phone, queue=(kind.queue if kind and kind.queue
                                                     else self.queue),
            name=_one_line(sub.name), email=sub.email, not_before=sub.not_before,
            not_after=sub.not_after, note=f"contact form, request {got.request}",
            vouched=got.new_customer)
        return d.addCallback(lambda _: got)

    def _failed(self, failure: Any, request: server.Request, wants_json: bool) -> None:
        body = {"error": "unavailable", "message": "not stored; please try again"}
        if failure.check(DomainError):
            log.warning("form: refused: %s", failure.getErrorMessage())
        else:
            body["incident"] = self.incidents.record(failure.value, self.clock(),
                                                     "form: could not store a submission")
        self._answer(request, 503, wants_json, body, finish=True)

    def _check(  # noqa: C901 - one check per form field, read top to bottom
        self, f: dict[str, str]
    ) -> tuple[dict[str, str], Submission]:
        problems: dict[str, str] = {}
        s = self.settings
        name = f.get("name", "").strip()
        email = f.get("email", "").strip()
        phone = f.get("phone", "").strip()
        subject = f.get("subject", "").strip()
        message = f.get("message", "").strip()
        product = f.get("product", "").strip()
        kind = f.get("request_type", "").strip()
        callback = f.get("callback", "").strip().lower() in TRUE
        if not _one_line(name) or len(name) > MAX_NAME_CHARS:
            problems["name"] = f"required, at most {MAX_NAME_CHARS} characters"
        bare = parseaddr(email)[1]
        if (not _EMAIL.match(email) or bare != email or len(email) > MAX_EMAIL_CHARS):
            problems["email"] = "a valid e-mail address is required"
        if phone and (len(phone) > MAX_PHONE_CHARS or not _PHONE.match(phone)):
            problems["phone"] = "not a phone number"
        if callback and not phone:
            problems["phone"] = "required for a call back"
        if not _one_line(subject) or len(subject) > MAX_SUBJECT_CHARS:
            problems["subject"] = f"required, at most {MAX_SUBJECT_CHARS} characters"
        if not message or len(message) > s.form_max_message_chars:
            problems["message"] = f"required, at most {s.form_max_message_chars} characters"
        if self.products and product and product not in self.products:
            problems["product"] = "not one of the offered products"
        elif len(product) > MAX_CHOICE_CHARS:
            problems["product"] = "too long"
        if self.types and kind not in self.types:
            problems["request_type"] = f"one of: {', '.join(sorted(self.types))}"
        elif not self.types and len(kind) > MAX_CHOICE_CHARS:
            problems["request_type"] = "too long"
        not_before, not_after, bad = form_callback.window(f) if callback else (None, None, {})
        problems.update(bad)
        for key, value in f.items():
            if key in FIELDS and "\x00" in value:
                problems[key] = "contains a NUL character"
        return problems, Submission(name, email, phone, subject, message, product, kind,
                                    callback, not_before, not_after)

    def _inbound(self, sub: Submission, client: str, now: float) -> InboundMail:
        s = self.settings
        to = s.form_address or s.from_address
        em = EmailMessage(policy=email_policy.SMTP)
        em["From"] = formataddr((_one_line(sub.name), sub.email))
        em["To"] = to
        em["Subject"] = _one_line(sub.subject)
        message_id = make_msgid(domain=s.message_id_domain)
        em["Message-ID"] = message_id
        em["X-Switchboard-Form"] = "contact"
        summary = [f"{label}: {_one_line(value)}" for label, value in (
            ("Name", sub.name), ("E-mail", sub.email), ("Phone", sub.phone),
            ("Product", sub.product), ("Request type", sub.request_type),
            ("Wants a call back", "yes" if sub.callback else "no")) if value]
        text = sub.message + "\n\n-- \n" + "\n".join(summary) + "\n"
        em.set_content(text)
        kind = self.types.get(sub.request_type)
        priority = kind.priority if kind else None
        if sub.callback:
            priority = max(priority or MIN_PRIORITY, s.form_callback_priority)
        fields = {"name": _one_line(sub.name), "email": sub.email, "phone": sub.phone,
                  "subject": _one_line(sub.subject), "product": sub.product,
                  "request_type": sub.request_type, "callback": "yes" if sub.callback else "no",
                  "client": client}
        return InboundMail(
            raw=em.as_bytes(), queue=(kind.queue if kind and kind.queue else self.queue),
            envelope_from=sub.email, recipients=(to,), from_address=sub.email,
            from_name=sub.name, to_addrs=(to,), subject=_one_line(sub.subject),
            message_id=message_id.strip("<>"), text=text,
            form=Prequalified(fields, queue=kind.queue if kind else None, priority=priority,
                              category=kind.category if kind else None),
        )

    # ------------------------------------------------------------------ answers

    def _answer(self, request: server.Request, status: int, wants_json: bool,
                data: dict[str, Any], finish: bool = False) -> bytes | None:
        if getattr(request, "_disconnected", False):
            return None
        request.setResponseCode(status)
        if wants_json:
            request.setHeader(b"content-type", b"application/json")
            body = json.dumps(data).encode()
        else:
            request.setHeader(b"content-type", b"text/html; charset=utf-8")
            body = answer_page(status, data).encode()
        if not finish:
            return body
        request.write(body)
        request.finish()
        return None


def _wants_json(request: server.Request) -> bool:
    ctype = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
    accept = (request.getHeader(b"accept") or b"").lower()
    return ctype == JSON_TYPE or (JSON_TYPE in accept and b"text/html" not in accept)


def _fields(request: server.Request, body: bytes) -> dict[str, str]:
    ctype = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("the body is not UTF-8") from None
    if ctype == JSON_TYPE:
        try:
            data = read_json(text)  # bounded (service/wire.py): never a RecursionError
        except NotJson as exc:
            raise ValueError(f"the body is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError("a JSON object is expected")
        out = {}
        for k, v in data.items():
            if isinstance(v, bool):
                v = "true" if v else ""
            if not isinstance(v, (str, int)):
                raise ValueError(f"field {str(k)[:40]!r} must be a string")
            out[str(k)] = str(v)
        return out
    if ctype in (b"application/x-www-form-urlencoded", b""):
        parsed = parse_qs(text, keep_blank_values=True, max_num_fields=len(FIELDS) + 8)
        return {k: v[0] for k, v in parsed.items()}
    raise ValueError("send application/x-www-form-urlencoded or application/json")


def _client(request: server.Request) -> str:
    return net.client_host(request)


def _one_line(value: str) -> str:
    """`value` fit for a header: each run of control or separator characters one space."""
    return _NOT_IN_A_HEADER.sub(" ", value or "").strip()


def page(types: dict[str, RequestType], products: list[str], honeypot: str) -> str:
    """The sample HTML form (no script; the honeypot is hidden from people by CSS)."""
    kinds = "".join(f'<option value="{html.escape(k)}">{html.escape(k)}</option>'
                    for k in sorted(types))
    kind_field = (f'<select name="request_type" required>{kinds}</select>' if types else
                  '<input name="request_type" maxlength="100">')
    prods = "".join(f'<option value="{html.escape(p)}">{html.escape(p)}</option>'
                    for p in products)
    product_field = (f'<select name="product"><option value=""></option>{prods}</select>'
                     if products else '<input name="product" maxlength="100">')
    hp = html.escape(honeypot)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Contact us</title>
<style>body{{font-family:sans-serif;max-width:40em;margin:2em auto}}label{{display:block;
margin-top:.8em}}input,select,textarea{{width:100%}}.hp{{position:absolute;left:-10000px}}
</style></head><body>
<h1>Contact us</h1>
<form method="post" action="/forms/contact">
<label>Name <input name="name" required maxlength="200" autocomplete="name"></label>
<label>E-mail <input name="email" type="email" required maxlength="254"
 autocomplete="email"></label>
<label>Phone <input name="phone" type="tel" maxlength="32" autocomplete="tel"></label>
<label>Product {product_field}</label>
<label>Request type {kind_field}</label>
<label>Subject <input name="subject" required maxlength="200"></label>
<label>Message <textarea name="message" rows="8" required></textarea></label>
<label><input type="checkbox" name="callback" value="yes" style="width:auto">
 Please call me back</label>
<label>Not before (UTC) <input name="callback_from" type="datetime-local"></label>
<label>Not after (UTC) <input name="callback_until" type="datetime-local"></label>
<div class="hp" aria-hidden="true"><label>Leave this empty <input name="{hp}"
 tabindex="-1" autocomplete="off"></label></div>
<p><button type="submit">Send</button></p>
</form></body></html>
"""


def answer_page(status: int, data: dict[str, Any]) -> str:
    if status == 200:
        request = data.get("request")
        text = (f"Thank you. Your request number is {html.escape(str(request))}."
                if request else "Thank you. We received your message.")
    elif data.get("fields"):
        items = "".join(f"<li>{html.escape(k)}: {html.escape(v)}</li>"
                        for k, v in sorted(data["fields"].items()))
        text = f"Please correct these fields:<ul>{items}</ul>"
    else:
        text = html.escape(str(data.get("message") or data.get("error") or "error"))
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Contact us'
            f'</title></head><body><p>{text}</p><p><a href="/forms/contact">Back</a></p>'
            f'</body></html>\n')


def forms_resource(mail: Any, settings: EmailSettings, queue: str,
                   callbacks: Any = None) -> Resource:
    """`/forms` with `contact` under it, to hang on the site root (`callbacks`: a call back
    also becomes a callback task)."""
    forms = Resource()
    forms.putChild(b"contact", ContactForm(mail, settings, queue, callbacks=callbacks))
    return forms
