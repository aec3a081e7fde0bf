"""An unexpected failure behind a console request (agent_console/server.py), with a real
`websockets` client: the agent gets `internal` with a short incident id, the log has that id in
one line with the trace, and the same failure repeated is not written again (counted, its ids
listed in the next line)."""

from __future__ import annotations

import logging
import re

from agent_console import messages as m
from tests.agent_console.harness import run, start_console


@run
async def test_an_unexpected_failure_answers_internal_with_an_incident_id(tmp_path, caplog):
    c = await start_console(tmp_path)
    await c.put_agent("a1")
    try:
        client = await c.connect("a1")
        await client.request("presence", status="available")
        task = await c.mail()
        await client.request("accept", offer_id=(await client.expect("offer"))["offer_id"])

        def broken(*args, **kw):
            raise RuntimeError("the relay table is gone")

        c.desks.on_reply(broken)
        with caplog.at_level(logging.ERROR, logger="agent_console.server"):
            answers = [await client.request("reply", task_id=task.id, text="hi")
                       for _ in range(50)]
            assert (await client.request("ping"))["type"] == "pong"
        incidents = [a["incident"] for a in answers]
        assert all(a["code"] == m.INTERNAL for a in answers)
        assert all(re.fullmatch(r"[0-9a-f]{8}", i) for i in incidents)
        assert len(set(incidents)) == 50
        assert f"incident {incidents[0]}" in answers[0]["message"]
        assert "Traceback" not in answers[0]["message"]
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1, [r.getMessage()[:200] for r in errors]
        line = errors[0].getMessage()
        assert f"[incident {incidents[0]}]" in line and "RuntimeError" in line
        assert "a request from a1 failed" in line
    finally:
        await c.stop()
