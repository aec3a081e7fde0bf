"""`App.start` on a real reactor and a real SQLite file with a few thousand open tasks: the
reactor runs other calls while the router fills up (the restore in slices, service/slices.py),
and the garbage collector's schedule is on before the state loads (no full pass of the
interpreter walks the heap in one piece during start-up: runtime/collector.py).

The reactor cannot be restarted inside pytest's process, so a child process starts the App and
prints what it saw as JSON (as bench/startup.py's children do)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from dispatcher.service.slices import SLICE

ROOT = Path(__file__).resolve().parents[3]
TASKS = 3 * SLICE + 11

CHILD = textwrap.dedent('''
    import json, sys
    from twisted.internet import asyncioreactor
    asyncioreactor.install()
    from twisted.internet import defer, task

    def main(reactor, url, n):
        return defer.ensureDeferred(go(reactor, url, int(n)))

    async def go(reactor, url, n):
        import gc
        import sqlalchemy as sa
        from dispatcher.domain.queues import Queue
        from dispatcher.runtime.app import App
        from dispatcher.runtime.config import Config, DatabaseConfig, WebhooksConfig
        from dispatcher.storage import schema
        from dispatcher.storage import tables as t

        def new_app():
            return App(Config(database=DatabaseConfig(url=url),
                              webhooks=WebhooksConfig(enabled=False)), reactor)

        schema.upgrade(url)
        app = new_app()
        await app.start()
        await app.configuration.put_queue(Queue("q"), "operator")
        await app.stop()
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(t.tasks.insert(), [
                {"id": f"t{i:06d}", "channel": "email", "queue": "q", "customer_id": None,
                 "created_at": 1000.0 + i, "base_skills": {}, "priority": 0, "deadline": None,
                 "attributes": {}, "state": "queued", "step": 0, "required_skills": {},
                 "agent_id": None, "offer_id": None, "offer_expires_at": None,
                 "step_started_at": 1000.0 + i, "updated_at": 1000.0 + i}
                for i in range(n)])
        engine.dispose()

        app = new_app()
        seen = {"turns": [], "gc_at_load": None}
        load = app.store.load_state

        def load_state():
            seen["gc_at_load"] = {"scheduled": app.collector._loop.running,
                                  "full_passes_off": gc.get_threshold()[2] > 10**6}
            return load()
        app.store.load_state = load_state
        started = app.start()

        def tick():  # each turn the reactor gets: how many tasks the router holds then
            seen["turns"].append(len(app.router.tasks))
            if not started.called:
                reactor.callLater(0, tick)
        reactor.callLater(0, tick)
        await started
        await app.stop()
        print(json.dumps(seen))

    task.react(main, sys.argv[1:])
''')


def test_the_app_starts_with_the_reactor_running_between_slices(tmp_path):
    url = f"sqlite:///{tmp_path}/sb.db"
    done = subprocess.run([sys.executable, "-c", CHILD, url, str(TASKS)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["gc_at_load"] == {"scheduled": True, "full_passes_off": True}
    during = [n for n in seen["turns"] if 0 < n < TASKS]
    assert len(during) >= 2, seen["turns"][-20:]  # turns while the router filled up
    assert seen["turns"][-1] == TASKS
