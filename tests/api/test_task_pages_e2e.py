"""Task pages over HTTP reach every task, however many are stored: the listing is one keyset
query of the store (filters and cursor in SQL), not a filter over the newest N tasks. A server
of its own holds more than 10,000 finished tasks (the old scan's limit) newer than the few a
customer and a channel filter must still find, page after page."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from dispatcher.domain.tasks import Channel, Task, TaskState
from dispatcher.service.ports import Changes
from tests.api.conftest import Server, started
from tests.dispatcher.storage.wiring import wire

T0 = 1_700_000_000.0
NEWER = 10_050  # more than the 10,000 newest tasks the list used to scan


def _finished(task_id: str, at: float, channel: Channel, customer: str) -> Task:
    task = Task(id=task_id, channel=channel, queue="support", customer_id=customer,
                created_at=at)
    task.state = TaskState.COMPLETED
    return task


def _store_history(url: str) -> list[str]:
    """Three old phone calls of customer `loyal`, then NEWER e-mails of customer `busy`; the
    old calls' ids, newest first."""
    old = [_finished(f"old-{i}", T0 + i, Channel.PHONE, "loyal") for i in range(3)]
    newer = [_finished(f"new-{i:05d}", T0 + 100 + i, Channel.EMAIL, "busy")
             for i in range(NEWER)]
    w = wire(url)
    try:
        w.wait(w.store.record(Changes(tasks=old + newer)))
    finally:
        w.close()
    return [t.id for t in reversed(old)]


def _walk(server: Server, query: str, limit: int) -> tuple[list[str], int]:
    """Every page of a listing: the ids in order and the number of pages."""
    seen: list[str] = []
    cursor, pages = None, 0
    while True:
        path = f"/api/v1/tasks?{query}&limit={limit}" + (
            f"&cursor={quote(cursor)}" if cursor else "")
        got = server.call("GET", path, role="supervisor")
        assert got.status == 200, got.body
        pages += 1
        assert len(got.body["items"]) <= limit
        seen += [t["id"] for t in got.body["items"]]
        cursor = got.body["next"]
        if cursor is None:
            return seen, pages


def test_pages_reach_tasks_older_than_ten_thousand_newer_ones(tmp_path: Path) -> None:
    with started(tmp_path) as server:
        old = _store_history(f"sqlite:///{tmp_path / 'switchboard.db'}")
        assert _walk(server, "customer=loyal", 2) == (old, 2)
        assert _walk(server, "channel=phone&queue=support&state=completed", 2) == (old, 2)
        assert _walk(server, "customer=loyal&channel=email", 2) == ([], 1)
        # The unfiltered list starts with the newest and a cursor leads on.
        first = server.call("GET", "/api/v1/tasks?limit=3", role="supervisor").body
        assert [t["id"] for t in first["items"]] == [
            f"new-{i:05d}" for i in (NEWER - 1, NEWER - 2, NEWER - 3)]
        after = server.call("GET", f"/api/v1/tasks?limit=1&cursor={quote(first['next'])}",
                            role="supervisor").body
        assert [t["id"] for t in after["items"]] == [f"new-{NEWER - 4:05d}"]
