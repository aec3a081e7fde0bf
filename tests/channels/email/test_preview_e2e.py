"""A mail's preview, end to end (issue 15, memory): `switchboard serve` takes a mail over real
SMTP (smtplib), on SQLite and on PostgreSQL through each driver it supports (psycopg2, the
default, and psycopg 3); the preview (its first lines) is stored with the task, not among the
attributes the router holds for every open task, and the REST API shows it as before: among the
task's attributes in its view and in the listing, and on the customer's timeline; after a
restart (the open task loaded again without it) too."""

from __future__ import annotations

import json
import re
import smtplib
import urllib.request
from email.message import EmailMessage
from pathlib import Path

import pytest
import sqlalchemy as sa
from twisted.internet.task import Clock

from dispatcher.domain.queues import Queue
from dispatcher.service.accounts import Accounts
from dispatcher.service.history import preview_from
from dispatcher.storage import schema
from dispatcher.storage import tables as t
from dispatcher.storage.accounts import SqlAccounts
from tests.api.conftest import token
from tests.dispatcher.runtime.running import desk_env, relay, serving
from tests.dispatcher.storage.wiring import url_for, wire

SECRET = b"preview-e2e-secret-" + b"p" * 40
BODY = ("Hello,\nmy parcel 4411 never came, and the tracking page says nothing since Monday. "
        "Could you look into it? It was a present for my daughter's birthday on Saturday, and "
        "I would rather have a refund than a parcel that comes after it.\nThanks, Ann\n")
PREVIEW = BODY[:200]  # service/mail.py PREVIEW_CHARS


def send(port: int) -> str:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "Ann <ann@ann.test>", "support@example.com", "Parcel"
    msg.set_content(BODY)
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.ehlo("client.test")
        s.mail("ann@ann.test")
        s.rcpt("support@example.com")
        code, text = s.data(msg.as_bytes())
    assert code == 250, (code, text)
    return re.search(rb"SB-\d+", text).group().decode()


def get(http: int, path: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{http}/api/v1{path}",
        headers={"Authorization": f"Bearer {token('boss', 'supervisor', secret=SECRET)}"})
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.load(r)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres),
                        pytest.param("postgres-psycopg", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'switchboard.db'}"
    return url_for(request.param, request)


@pytest.mark.slow
def test_the_preview_is_stored_apart_and_shown_as_before_across_a_restart(
        tmp_path: Path, database: str) -> None:
    url = database
    schema.upgrade(url)
    w = wire(url)
    try:
        w.wait(w.store.put_queue(Queue("support")))
        w.wait(Accounts(SqlAccounts(w.pool), w.store, Clock()).set("boss", "supervisor", "Boss"))
    finally:
        w.close()
    with relay() as (_sink, relay_port):
        env, ports = desk_env(tmp_path, url, relay_port, SECRET,
                              SWITCHBOARD_API_JWT_SECRET_FILE=str(tmp_path / "console.secret"))
        with serving(tmp_path, env, (ports.smtp, ports.http)):
            request = send(ports.smtp)
            listed = [i for i in get(ports.http, "/tasks?queue=support")["items"]
                      if i["attributes"].get("request") == request]
            assert len(listed) == 1 and listed[0]["state"] == "queued"
            assert listed[0]["attributes"]["preview"] == PREVIEW
            task_id, customer_id = listed[0]["id"], listed[0]["customer_id"]
            shown = get(ports.http, f"/tasks/{task_id}")["task"]  # the router's task, live
            assert shown["state"] == "queued" and shown["attributes"]["preview"] == PREVIEW
            timeline = get(ports.http, f"/customers/{customer_id}")["timeline"]
            assert [e["preview"] for e in timeline] == [preview_from(PREVIEW)]
        # Stored apart: the column holds it, the attributes the router loads do not.
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            row = conn.execute(sa.select(t.tasks.c.preview, t.tasks.c.attributes)
                               .where(t.tasks.c.id == task_id)).one()
        engine.dispose()
        assert row.preview == PREVIEW and "preview" not in row.attributes
        assert row.attributes["request"] == request
        with serving(tmp_path, env, (ports.smtp, ports.http)):  # restarted: loaded again
            shown = get(ports.http, f"/tasks/{task_id}")["task"]
            assert shown["state"] == "queued" and shown["attributes"]["preview"] == PREVIEW
            timeline = get(ports.http, f"/customers/{customer_id}")["timeline"]
            assert [e["preview"] for e in timeline] == [preview_from(PREVIEW)]
