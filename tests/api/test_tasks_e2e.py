"""Tasks over HTTP: created through Intake (stored, then routed: the trail shows both), with the
system it came from kept in `source`; listed newest first with filters and cursor paging;
reprioritised and cancelled, each change in the trail."""

from __future__ import annotations

from tests.api.conftest import Server


def _create(server: Server, queue: str, who: str, **extra) -> dict:
    got = server.call("POST", "/api/v1/tasks", {
        "channel": "email", "queue": queue, "customer": {"value": who, "name": "Pat"},
        "subject": "Case 42", "body": "Printer on fire", **extra}, role="integration")
    assert got.status == 201, got.body
    return got.body


def test_create_show_reprioritise_cancel(server: Server) -> None:
    task = _create(server, "sales", "pat@example.com", source="crm", priority=3,
                   attributes={"case": "42"})
    assert task["state"] == "queued" and task["priority"] == 3
    assert task["attributes"] == {"case": "42", "subject": "Case 42", "body": "Printer on fire",
                                  "source": "crm", "submitted_by": "integration:crm"}
    shown = server.call("GET", f"/api/v1/tasks/{task['id']}", role="supervisor").body
    assert [e["kind"] for e in shown["trail"]][:2] == ["task.created", "task.queued"]
    assert shown["trail"][0]["data"]["identity"] == ["email", "pat@example.com"]
    assert shown["conversation"] == {"entries": [], "more": False}
    # An integration reads the task but not its conversation (Conversation's rule).
    assert server.call("GET", f"/api/v1/tasks/{task['id']}",
                       role="integration").body["conversation"] is None
    got = server.call("POST", f"/api/v1/tasks/{task['id']}/priority", {"priority": 60},
                      role="supervisor")
    assert got.status == 200 and got.body["priority"] == 60
    got = server.call("POST", f"/api/v1/tasks/{task['id']}/cancel", {"reason": "spam"},
                      role="integration")
    assert got.status == 200 and got.body["state"] == "cancelled"
    trail = server.call("GET", f"/api/v1/tasks/{task['id']}", role="supervisor").body["trail"]
    kinds = [e["kind"] for e in trail]
    assert "task.changed" in kinds and kinds[-1] == "task.cancelled", kinds
    assert trail[-1]["actor"] == "integration:crm"
    again = server.call("POST", f"/api/v1/tasks/{task['id']}/cancel", {}, role="integration")
    assert again.status == 404  # no longer open


def test_filters_and_cursor_paging(server: Server) -> None:
    made = [_create(server, "sales", f"page{i}@example.com", source="chat")["id"]
            for i in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        query = "queue=sales&state=queued&channel=email&limit=2" + (
            f"&cursor={cursor}" if cursor else "")
        page = server.call("GET", f"/api/v1/tasks?{query}", role="supervisor").body
        assert len(page["items"]) <= 2
        seen += [t["id"] for t in page["items"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen))
    newest_first = [i for i in seen if i in made]
    assert newest_first == list(reversed(made))
    one = server.call("GET", "/api/v1/tasks?customer=" + server.call(
        "GET", f"/api/v1/tasks/{made[0]}", role="supervisor").body["task"]["customer_id"],
        role="supervisor").body
    assert [t["id"] for t in one["items"]] == [made[0]]
    none = server.call("GET", "/api/v1/tasks?channel=phone&queue=sales&state=queued",
                       role="supervisor").body
    assert all(t["channel"] == "phone" for t in none["items"])
