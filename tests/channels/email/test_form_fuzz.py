"""The contact form (channels/email/form.py) fuzzed with hypothesis, for a bounded time: whatever
a visitor (or a robot) posts, form-encoded, JSON or raw bytes, the answer is one of the form's
own (200, 400, 413, 415, 429), never a 500; every 200 with a request number is a stored task
whose subject and sender name hold no control or separator character."""

from __future__ import annotations

import json
import unicodedata
from urllib.parse import urlencode

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channels.email.config import EmailSettings
from channels.email.form import ContactForm
from tests.channels.email.test_form import GOOD, TYPES, Clock, answer, mail, post, stack  # noqa: F401 - fixtures

FORM_ANSWERS = {200, 400, 413, 415, 429}
FUZZ = settings(max_examples=300, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
# Text as hostile as unicode allows: controls, separators, surrogates, NUL, long runs.
HOSTILE = st.text(st.characters(codec=None, exclude_categories=()), max_size=300) | st.sampled_from(
    ["\u2028", "\x0c", "\x00", "\r\nBcc: x@y.z", "[#SB-000001]", "\ud800", "=?utf-8?q?x?=",
     "a" * 5000, "\u202e", "<script>"])
FIELD_NAMES = st.sampled_from(["name", "email", "phone", "subject", "message", "product",
                               "request_type", "callback", "website", "zzz"])


def bad_char(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cc", "Zl", "Zp") or "\ud800" <= ch <= "\udfff"


def fresh_form(service) -> ContactForm:
    settings_ = EmailSettings(form_types=TYPES, form_products="Router X2,Phone 7",
                              form_per_address_per_hour=1000, form_per_ip_per_hour=1000,
                              form_max_bytes=16384)
    return ContactForm(service, settings_, "support", clock=Clock())


def check(the_stack, request) -> None:
    code, data = answer(request)
    assert code in FORM_ANSWERS, (code, data)
    if code == 200 and isinstance(data, dict) and data.get("request"):
        found = [t for t in the_stack.router.tasks.values()
                 if t.attributes.get("request") == data["request"]]
        assert found, data
        subject = found[0].attributes.get("subject", "")
        assert not any(bad_char(c) for c in subject), repr(subject)


@FUZZ
@given(fields=st.dictionaries(FIELD_NAMES, HOSTILE, max_size=8), as_json=st.booleans())
def test_any_fields_get_one_of_the_form_s_answers(stack, mail,  # noqa: F811
                                                  fields, as_json) -> None:
    form = fresh_form(mail)
    try:
        body = json.dumps({**GOOD, **fields}).encode() if as_json else \
            urlencode({**GOOD, **fields}, encoding="utf-8", errors="surrogatepass").encode()
    except UnicodeEncodeError:
        body = repr(fields).encode()
    check(stack, post(form, as_json=as_json, body=body))


@FUZZ
@given(body=st.binary(max_size=2000) | st.from_regex(rb"[\[{\"\\]{0,400}", fullmatch=True),
       as_json=st.booleans())
def test_any_bytes_get_one_of_the_form_s_answers(stack, mail,  # noqa: F811
                                                 body, as_json) -> None:
    check(stack, post(fresh_form(mail), as_json=as_json, body=body))
