"""channels/email/reading.py: a worker's answer is unpickled with only the data classes of an
`InboundMail` allowed, so a subverted worker (it reads hostile mail) cannot make the server run
anything; a real message's answer still comes through whole."""

from __future__ import annotations

import os
import pickle

import pytest

from channels.email.parse import parse
from channels.email.reading import load_answer
from channels.email.translate import inbound
from tests.channels.email.hostile import raw


def test_a_real_answer_comes_through_whole(tmp_path) -> None:
    message = raw("pdf-single-part.eml")
    mail = inbound(message, "support", "a@customer.org", ("support@example.com",),
                   parsed=parse(message), attachments_dir=str(tmp_path))
    kind, value = load_answer(pickle.dumps(("ok", mail), protocol=pickle.HIGHEST_PROTOCOL))
    assert kind == "ok" and value == mail and value.attachments


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


class _CallsOurs:
    def __reduce__(self):
        from dispatcher.service.mail import new_message_id

        return (new_message_id, (0.0,))


@pytest.mark.parametrize("answer", [_Evil(), _CallsOurs()])
def test_an_answer_naming_anything_callable_is_refused(answer) -> None:
    with pytest.raises(pickle.UnpicklingError):
        load_answer(pickle.dumps(("ok", answer)))
