"""Live configuration, as an operator and an agent see it: `switchboard serve` runs; the
operator adds a queue and an agent with the command line (another process, same database);
without a restart the agent signs in to the console, and a customer's e-mail to that queue is
offered to them."""

from __future__ import annotations

import asyncio
import time
from email.message import EmailMessage

from dispatcher.storage import schema
from tests.dispatcher.runtime.running import desk_env, relay, run, serving
from tests.dispatcher.runtime.test_answers_e2e import SECRET, _send, console

APPLIED_WITHIN = 20.0  # seconds: the watch polls every few seconds; the machine may be busy


async def _available(ws_port: int, agent_id: str):
    """The agent's console, once the server knows the agent (the CLI added them)."""
    deadline = time.monotonic() + APPLIED_WITHIN
    while True:
        try:
            client = await console(ws_port, agent_id, "agent")
            frame = await client.request("presence", status="available")
            if frame["type"] == "ok":
                return client
            await client.ws.close()
        except Exception:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"{agent_id} never became available: {frame}")
        await asyncio.sleep(0.5)


async def _offered(smtp_port: int, ws_port: int) -> dict:
    agent = await _available(ws_port, "ann")
    mail = EmailMessage()
    mail["From"], mail["To"] = "Bo Customer <bo@customer.org>", "sales@example.com"
    mail["Subject"], mail["Message-ID"] = "A quote, please", "<live-config-1@customer.org>"
    mail.set_content("How much for twelve?")
    await asyncio.to_thread(_send, smtp_port, mail)
    offer = await agent.expect("offer")
    await agent.ws.close()
    return offer


def test_a_queue_and_an_agent_added_by_the_cli_work_in_the_running_server(tmp_path):
    url = f"sqlite:///{tmp_path / 'switchboard.db'}"
    schema.upgrade(url)
    with relay() as (_, relay_port):
        env, ports = desk_env(tmp_path, url, relay_port, SECRET, SWITCHBOARD_EMAIL_ACK_QUEUES="")
        env["SWITCHBOARD_EMAIL_RECIPIENTS"] = "sales@example.com=sales"
        with serving(tmp_path, env, (ports.smtp, ports.ws, ports.http)) as log:
            for args in (["queues", "add", "sales"],
                         ["agents", "add", "ann", "--queues", "sales", "--channels", "email"]):
                done = run(*args, cwd=tmp_path, env=env)
                assert done.code == 0, done.err
                assert "within a few seconds" in done.out
            offer = asyncio.run(_offered(ports.smtp, ports.ws))
            assert offer["task"]["queue"] == "sales", offer
            assert "router rebuilt" in log.read_text()  # started once, before the changes
