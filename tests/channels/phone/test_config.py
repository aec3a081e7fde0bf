"""Phone settings: queue addresses and the checks made at start."""

from __future__ import annotations

import dataclasses

import pytest

from channels.phone.config import PhoneSettings, QueueAddresses, algorithms, check, parse_queues
from dispatcher.domain.errors import InvalidValue


def test_queue_addresses_full_address_before_user_part():
    a = QueueAddresses(parse_queues("support=support, sip:Sales@Example.com=sales,"
                                    "sales=other"))
    assert a.queue_for("support", "anything.example") == "support"
    assert a.queue_for("sales", "example.com") == "sales"
    assert a.queue_for("sales", "elsewhere") == "other"
    assert a.queue_for("%73upport", "x") == "support"  # escaped user parts count as written
    assert a.queue_for("nobody", "x") is None and a.queue_for(None, "x") is None


def test_bad_settings_are_refused_at_start():
    good = PhoneSettings(queues="support=support")
    check(good)
    assert algorithms(good) == ("SHA-256", "MD5")
    for change in ({"queues": "support"}, {"udp_port": 70000}, {"tcp_port": -2},
                   {"queued_interval": 0}, {"max_queue_wait": -1},
                   {"register_min": 100, "register_max": 10}, {"digest_algorithms": "MD4"},
                   {"digest_algorithms": ""}, {"realm": ""}, {"nonce_seconds": 0},
                   {"cti_route_timeout": 0}, {"sip_enabled": False}):  # neither SIP nor CTI: nothing to run
        with pytest.raises(InvalidValue):
            check(dataclasses.replace(good, **change))
    check(dataclasses.replace(good, sip_enabled=False, cti_enabled=True))  # CTI only


def test_off_by_default():
    assert PhoneSettings().enabled is False


def test_abuse_limits_have_defaults_and_are_checked():
    good = PhoneSettings(queues="support=support")
    assert (good.auth_max_failures, good.auth_failure_window) == (10, 300.0)
    assert (good.invite_rate, good.invite_burst) == (5.0, 20)
    for change in ({"auth_max_failures": 0}, {"auth_failure_window": 0}, {"invite_rate": 0},
                   {"invite_burst": 0}):
        with pytest.raises(InvalidValue):
            check(dataclasses.replace(good, **change))
