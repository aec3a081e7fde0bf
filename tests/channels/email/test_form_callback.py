"""The contact form's "call me back" as a phone callback (channels/email/form_callback.py, issue
18): on the service layer with a virtual clock, a submission that asks for a call back gives
the e-mail task AND a callback task in the same queue, at the window typed (UTC), to the
number, which joins the customer who wrote; a bad window is a 400 with the other problems."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from channels.email.config import EmailSettings
from channels.email.form import ContactForm
from channels.email.form_callback import moment
from dispatcher.domain import callbacks as cb
from dispatcher.domain.tasks import Channel
from dispatcher.service.calls import Calls
from dispatcher.service.intake import email_identity, phone_identity
from dispatcher.storage.phones import MemoryPhones
from tests.channels.email.test_form import GOOD, TYPES, answer, post
from tests.channels.email.test_form import mail as mail
from tests.channels.email.test_form import stack as stack


@pytest.fixture
def form(stack, mail) -> ContactForm:
    calls = Calls(stack.assignment, stack.intake, MemoryPhones())
    stack.wait(calls.start())
    return ContactForm(mail, EmailSettings(form_types=TYPES), "support",
                       clock=stack.clock.seconds, callbacks=calls.callbacks)


def test_a_call_back_is_a_callback_task_at_its_window(stack, form) -> None:
    now = stack.clock.seconds()
    start = datetime.fromtimestamp(now + 7200, UTC).strftime("%Y-%m-%dT%H:%M")
    code, data = answer(post(form, {**GOOD, "callback": "yes", "callback_from": start},
                             as_json=True))
    assert code == 200, data
    by_channel = {t.channel: t for t in stack.router.tasks.values()}
    mail_task, call = by_channel[Channel.EMAIL], by_channel[Channel.PHONE]
    assert mail_task.priority >= 50  # the e-mail still says "call back"
    request = call.attributes[cb.ATTRIBUTE]
    assert (request["number"], request["origin"]) == ("+3225550100", "web")
    assert call.queue == "support" and call.created_at == moment(start)
    assert call.id in stack.router.parked()  # not offered before its window
    assert call.customer_id == mail_task.customer_id  # one history
    customer = stack.wait(stack.store.find_customer(phone_identity("+3225550100")))
    assert customer is not None and customer.id == mail_task.customer_id
    assert stack.wait(stack.store.find_customer(email_identity(GOOD["email"]))).id == \
        customer.id


def test_a_known_address_typed_in_the_form_gets_a_call_not_a_link_to_its_history(
        stack, form) -> None:
    known = stack.wait(stack.intake.submit(Channel.EMAIL, "support",
                                           email_identity(GOOD["email"]), "Bea"))
    code, data = answer(post(form, {**GOOD, "callback": "yes"}, as_json=True))
    assert code == 200, data
    (call,) = [t for t in stack.router.tasks.values() if t.channel is Channel.PHONE]
    assert call.customer_id != known.customer_id
    card = stack.wait(stack.store.get_customer(known.customer_id))
    assert phone_identity("+3225550100") not in card.identities


def test_no_call_back_no_callback_task_and_a_bad_window_is_refused(stack, form) -> None:
    assert answer(post(form, GOOD, as_json=True))[0] == 200
    assert {t.channel for t in stack.router.tasks.values()} == {Channel.EMAIL}
    code, data = answer(post(form, {**GOOD, "callback": "yes", "callback_until": "tomorrow"},
                             as_json=True))
    assert code == 400 and "callback_until" in data["fields"]
