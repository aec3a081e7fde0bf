"""The admin edge's configuration commands (admin/configuration.py) run in process on a SQLite
database, given the context the runtime builds: bad values are refused with a clear error and
nothing is stored; the CLI as a user runs it is tests/dispatcher/runtime/test_cli.py."""

from __future__ import annotations

import re
from argparse import Namespace

import pytest
from twisted.internet.defer import ensureDeferred

from admin import configuration as admin
from dispatcher.domain.errors import DomainError
from dispatcher.domain.tasks import Channel
from dispatcher.storage import schema
from tests.admin.context import command_context
from tests.dispatcher.storage.wiring import wire


@pytest.fixture
def db(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'switchboard.db'}"
    schema.upgrade(url)
    return url


def stored(url: str, what: str):
    w = wire(url)
    try:
        return w.wait(getattr(w.store, what)())
    finally:
        w.close()


def admin_run(db: str, command, **args):
    """Run one `admin.cmd_*` on a SqlStore, as the CLI would after parsing `args`."""
    w = wire(db)
    try:
        return w.wait(ensureDeferred(command(command_context(w), Namespace(**args))))
    finally:
        w.close()


AGENT_ARGS = dict(id="bob", name=None, skills="", queues="", capacity=None, channels=None,
                  attribute=None, interruptions=None)
QUEUE_ARGS = dict(name="sales", requires=None, step=None, mode="push", choice="longest_idle",
                  priority=0, sl_target=None, offer_timeout=None, wrap_up=None, calendar=None,
                  deadline=None, dispositions=None, expression="", reserve=0)


@pytest.mark.parametrize(
    ("command", "args", "message"),
    [
        (admin.cmd_agents_add, {"channels": "email,fax"}, "unknown channel 'fax'"),
        (admin.cmd_agents_add, {"capacity": "phone=-1"}, "capacity for phone must be >= 0"),
        (admin.cmd_agents_add, {"capacity": "fax=1"}, "expected phone=N or email=N"),
        (admin.cmd_agents_add, {"skills": "support"}, "expected skill=level"),
        (admin.cmd_agents_set_skills, {"id": "nobody", "skills": "support=1"}, "no such agent"),
        (admin.cmd_queues_add, {"step": ["60"]}, "expected SECONDS:skill=level"),
        (admin.cmd_queues_add, {"step": ["-5:x=1"]}, "0 s or later"),
        (admin.cmd_queues_add, {"requires": "x=abc"}, "level must be a whole number"),
        (admin.cmd_queues_add, {"deadline": "soon"}, "unknown deadline rule"),
        (admin.cmd_queues_add, {"sl_target": "phone=abc"}, "expected phone=N or email=N"),
        (admin.cmd_queues_add, {"dispositions": "solved"}, "expected code=Label"),
        (admin.cmd_queues_add, {"dispositions": "no good=Label"}, "disposition code 'no good'"),
        (admin.cmd_queues_add, {"dispositions": "solved="}, "the label must be"),
        (admin.cmd_queues_add, {"dispositions": "a=A,a=B"}, "listed twice"),
        (admin.cmd_queues_add, {"expression": "tier = "}, "column 8: expected a name"),
        (admin.cmd_queues_add, {"step": ["60::tier ="]}, "column 7: expected a name"),
        (admin.cmd_queues_add, {"reserve": -1}, "reserve: a number of agents"),
        (admin.cmd_agents_add, {"attribute": ["languages"]}, "expected NAME=VALUE"),
        (admin.cmd_agents_add, {"attribute": ["and=1"]}, "is not a name"),
        (admin.cmd_agents_add, {"interruptions": "email:fax"}, "channels are email, phone"),
    ],
)
def test_admin_commands_refuse_bad_values_and_store_nothing(db, command, args, message):
    defaults = AGENT_ARGS if command is not admin.cmd_queues_add else QUEUE_ARGS
    with pytest.raises(DomainError, match=re.escape(message)):
        admin_run(db, command, **{**defaults, **args})
    assert stored(db, "list_agents") == []
    assert stored(db, "list_queues") == []


def test_admin_agent_capacity_and_channels(db):
    admin_run(db, admin.cmd_queues_add, **{**QUEUE_ARGS, "name": "support"})
    admin_run(db, admin.cmd_agents_add, **{**AGENT_ARGS, "queues": "support",
                                           "capacity": "email=5", "channels": "email"})
    [agent] = stored(db, "list_agents")
    assert agent.capacity[Channel.EMAIL] == 5 and agent.capacity[Channel.PHONE] == 1
    assert agent.channels == {Channel.EMAIL}
