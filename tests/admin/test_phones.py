"""`switchboard phones set | list | remove`, run as a user runs it, on a SQLite file: passwords
become digest hashes (never stored), SIP users and extensions are unique, errors are clear."""

from __future__ import annotations

import json

import pytest

from dispatcher.service.calls import digest_ha1
from dispatcher.storage import schema
from dispatcher.storage.phones import SqlPhones
from tests.dispatcher.runtime.running import base_env, run
from tests.dispatcher.storage.wiring import wire


@pytest.fixture
def db(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'switchboard.db'}"
    schema.upgrade(url)
    return url


def sb(url: str, *args: str, tmp_path):
    r = run("--database", url, *args, cwd=tmp_path, env=base_env())
    assert "Traceback" not in r.err, r.err
    return r


def test_set_list_and_remove_phones(db, tmp_path):
    assert sb(db, "queues", "add", "support", tmp_path=tmp_path).code == 0
    for agent in ("ann", "bob"):
        assert sb(db, "agents", "add", agent, "--queues", "support", tmp_path=tmp_path).code == 0
    (tmp_path / "pw").write_text("s3cret\n")
    r = sb(db, "phones", "set", "ann", "--user", "ann", "--password-file", str(tmp_path / "pw"),
           "--extension", "1001", tmp_path=tmp_path)
    assert r.code == 0, r.err
    r = sb(db, "phones", "set", "bob", "--user", "ann", "--password", "x", tmp_path=tmp_path)
    assert r.code != 0 and "SIP user ann belongs to ann" in r.err
    r = sb(db, "phones", "set", "bob", "--extension", "1001", tmp_path=tmp_path)
    assert r.code != 0 and "extension 1001 belongs to ann" in r.err
    r = sb(db, "phones", "set", "carl", "--extension", "1003", tmp_path=tmp_path)
    assert r.code != 0 and "no such agent: carl" in r.err
    r = sb(db, "phones", "set", "bob", "--user", "bob", tmp_path=tmp_path)
    assert r.code != 0 and "needs a password" in r.err
    assert sb(db, "phones", "set", "bob", "--extension", "1002", tmp_path=tmp_path).code == 0

    r = sb(db, "phones", "list", "--json", tmp_path=tmp_path)
    assert r.code == 0, r.err
    assert json.loads(r.out) == [
        {"agent": "ann", "sip_user": "ann", "realm": "switchboard", "extension": "1001",
         "contact": None},
        {"agent": "bob", "sip_user": None, "realm": "switchboard", "extension": "1002",
         "contact": None},
    ]
    w = wire(db)
    try:
        [ann, _] = w.wait(SqlPhones(w.pool, lambda: 0.0).list_phone_accounts())
    finally:
        w.close()
    assert ann.ha1_md5 == digest_ha1("ann", "switchboard", "s3cret")
    assert ann.ha1_sha256 == digest_ha1("ann", "switchboard", "s3cret", "SHA-256")
    assert "s3cret" not in (tmp_path / "switchboard.db").read_bytes().decode("latin-1")

    assert sb(db, "phones", "remove", "bob", tmp_path=tmp_path).code == 0
    r = sb(db, "phones", "remove", "bob", tmp_path=tmp_path)
    assert r.code != 0 and "bob has no phone account" in r.err
