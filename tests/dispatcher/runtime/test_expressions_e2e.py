"""Requirement expressions through the real path: an operator configures a queue's expression,
agents' attributes (and blends) and categories with the command line; `switchboard serve` runs; customers'
e-mails arrive over SMTP, are categorised (the category sets the task's `language`), and each
is offered, over the agents' console WebSockets, only to an agent the expression admits."""

from __future__ import annotations

import asyncio
import json
from email.message import EmailMessage

import pytest

from dispatcher.storage import schema
from tests.dispatcher.runtime.running import desk_env, relay, run, serving
from tests.dispatcher.runtime.test_answers_e2e import SECRET, _send, console

EXPRESSION = 'languages HAS task.language AND tier != "trainee"'
QUIET_SECONDS = 2.0  # an agent who must not be offered anything is watched this long


async def _desk(smtp_port: int, ws_port: int) -> dict[str, list[dict]]:
    agents = {}
    for aid in ("ann", "fanny", "theo"):  # signed in in this order: ann idles longest
        agents[aid] = await console(ws_port, aid, "agent")
        frame = await agents[aid].request("presence", status="available")
        assert frame["type"] == "ok", frame
    got: dict[str, list[dict]] = {aid: [] for aid in agents}

    async def arrives(subject: str, n: int) -> None:
        mail = EmailMessage()
        mail["From"], mail["To"] = "Bo Client <bo@client.org>", "support@example.com"
        mail["Subject"], mail["Message-ID"] = subject, f"<expr-{n}@client.org>"
        mail.set_content("Merci / thanks")
        await asyncio.to_thread(_send, smtp_port, mail)

    await arrives("Bonjour, ma commande", 1)
    got["fanny"].append(await agents["fanny"].expect("offer"))
    await agents["fanny"].request("accept", offer_id=got["fanny"][0]["offer_id"])
    await arrives("Hello, my order", 2)
    got["ann"].append(await agents["ann"].expect("offer"))
    await arrives("Bonjour encore", 3)  # fanny holds one (capacity 3): hers, not theo's
    got["fanny"].append(await agents["fanny"].expect("offer"))
    for aid in ("ann", "theo"):
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(agents[aid].expect("offer"), QUIET_SECONDS)
    for client in agents.values():
        await client.ws.close()
    return got


def test_each_mail_is_offered_only_to_agents_the_expression_admits(tmp_path):
    url = f"sqlite:///{tmp_path / 'switchboard.db'}"
    schema.upgrade(url)
    with relay() as (_, relay_port):
        env, ports = desk_env(tmp_path, url, relay_port, SECRET, SWITCHBOARD_EMAIL_ACK_QUEUES="")
        for args in (
                ["queues", "add", "support", "--expression", EXPRESSION],
                ["agents", "add", "ann", "--queues", "support", "--channels", "email",
                 "--attribute", "languages=en"],
                ["agents", "add", "fanny", "--queues", "support", "--channels", "email",
                 "--attribute", "languages=fr,en", "--attribute", "tier=senior"],
                ["agents", "add", "theo", "--queues", "support", "--channels", "email",
                 "--attribute", 'languages=["fr"]', "--attribute", "tier=trainee",
                 "--interruptions", "email:email; phone:"],
                ["queues", "add", "hotline", "--reserve", "2"],
                ["categories", "add", "french", "--attribute", "language=fr"],
                ["categories", "rule-add", "french", "--field", "subject", "--pattern",
                 "bonjour", "--match", "keywords"],
                ["categories", "add", "english", "--attribute", "language=en"],
                ["categories", "rule-add", "english", "--field", "subject", "--pattern",
                 "hello", "--match", "keywords"]):
            done = run(*args, cwd=tmp_path, env=env)
            assert done.code == 0, (args, done.err)
        listed = run("queues", "list", cwd=tmp_path, env=env)
        assert f"expression={EXPRESSION!r}" in listed.out
        listed = run("agents", "list", cwd=tmp_path, env=env)
        assert 'languages=["fr", "en"] tier="senior"' in listed.out
        agents = {a["id"]: a for a in json.loads(run("agents", "list", "--json", cwd=tmp_path,
                                                      env=env).out)}
        assert agents["theo"]["interruptions"] == {"email": ["email"], "phone": []}
        assert agents["ann"]["interruptions"] is None
        queues = {q["name"]: q for q in json.loads(run("queues", "list", "--json", cwd=tmp_path,
                                                       env=env).out)}
        assert queues["hotline"]["reserve"] == 2
        with serving(tmp_path, env, (ports.smtp, ports.ws, ports.http)):
            got = asyncio.run(_desk(ports.smtp, ports.ws))
    subjects = {aid: [o["task"]["attributes"]["subject"] for o in offers]
                for aid, offers in got.items()}
    assert subjects["fanny"] == ["Bonjour, ma commande", "Bonjour encore"]
    assert subjects["ann"] == ["Hello, my order"]
    assert {o["task"]["attributes"]["language"] for o in got["fanny"]} == {"fr"}
    assert got["theo"] == []


def test_a_bad_expression_is_refused_by_the_command_with_its_column(tmp_path):
    url = f"sqlite:///{tmp_path / 'switchboard.db'}"
    schema.upgrade(url)
    env, _ = desk_env(tmp_path, url, 1, SECRET)
    done = run("queues", "add", "support", "--expression", "languages HAS AND x",
               cwd=tmp_path, env=env)
    assert done.code == 2, done
    assert "column 15" in done.err and "expected a name" in done.err
