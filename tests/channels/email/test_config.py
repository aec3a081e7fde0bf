"""The e-mail edge's settings (channels/email/config.py): which addresses the SMTP intake takes
(the configured recipients, and the addresses we send from, since customers answer there and
delivery reports come back there) and the policy the service gets (reply addresses per queue,
signatures, our own addresses)."""

from __future__ import annotations

import pytest

from channels.email.config import EmailSettings, Routes, policy_from
from dispatcher.domain.errors import InvalidValue


def test_recipients_and_the_addresses_we_send_from_are_ours() -> None:
    s = EmailSettings(recipients="support@x.test=support,sales@x.test=sales",
                      queue_from="sales=orders@x.test", from_address="noreply@x.test")
    routes = Routes.from_settings(s)
    assert routes.queue_for("Support@X.test") == "support"
    assert routes.queue_for("orders@x.test") == "sales"
    assert routes.queue_for("noreply@x.test") == "support"  # the first routed queue
    assert routes.queue_for("someone@else.test") is None
    with_default = Routes.from_settings(EmailSettings(recipients="a@x.test=a",
                                                      default_queue="b", domains="x.test"))
    assert with_default.queue_for("support@switchboard.invalid") == "b"
    assert with_default.queue_for("anyone@x.test") == "b"


def test_the_policy_of_replies(tmp_path) -> None:
    sig = tmp_path / "sales.sig"
    sig.write_text("The sales team\n+32 2 555 01 00\n")
    p = policy_from(EmailSettings(recipients="support@x.test=support", relay_host="mx",
                                  queue_from="sales=orders@x.test", signature="{agent_name}\\nX",
                                  signature_files=f"sales={sig}", domains="x.test"))
    assert (p.from_for("sales"), p.from_for("support")) == ("orders@x.test",
                                                            "support@switchboard.invalid")
    assert p.signature_for("support") == "{agent_name}\nX"
    assert p.signature_for("sales") == "The sales team\n+32 2 555 01 00"
    assert {"support@x.test", "orders@x.test"} <= p.own_addresses
    assert p.own_domains == {"x.test"} and p.relay is True


@pytest.mark.parametrize("bad", [{"queue_from": "sales"}, {"queue_from": "sales=nobody"},
                                 {"signature_files": "sales=/nonexistent/file.sig"}])
def test_bad_reply_settings_are_refused_at_start(bad) -> None:
    with pytest.raises(InvalidValue):
        policy_from(EmailSettings(**bad))
