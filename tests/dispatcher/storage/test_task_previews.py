"""An e-mail's preview in a column of its own (revision 0021), on SQLite and PostgreSQL: a row
stored before keeps its preview inside its attributes, where every reader of the store still
finds it (the task view, `previews`, the customer's records); the column comes and goes with
the revision, the rows intact."""

from __future__ import annotations

import sqlalchemy as sa

from dispatcher.storage import schema
from dispatcher.storage.engine import make_engine
from tests.dispatcher.storage.wiring import wire

T0 = 1_700_000_000.0
OLD = {"subject": "Parcel", "preview": "Hello, my parcel never came", "request": "SB-000001"}


def test_0021_keeps_the_previews_stored_before_where_readers_find_them(empty_url: str) -> None:
    schema.upgrade(empty_url, "0020")
    engine = make_engine(empty_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO customers (id, name, created_at) VALUES ('c1', 'Ann', :at)"),
                {"at": T0})
            for task_id, state in [("open", "queued"), ("closed", "completed")]:
                conn.execute(sa.text(
                    "INSERT INTO tasks (id, channel, queue, customer_id, created_at, base_skills,"
                    " priority, attributes, state, step, required_skills) VALUES (:id, 'email',"
                    " 'support', 'c1', :at, '{}', 0, :attributes, :state, 0, '{}')"),
                    {"id": task_id, "at": T0, "state": state,
                     "attributes": '{"subject": "Parcel", "preview": "Hello, my parcel never'
                                   ' came", "request": "SB-000001"}'})
        schema.upgrade(empty_url)
        w = wire(empty_url)
        try:
            assert w.wait(w.store.get_task("closed")).attributes == OLD
            assert w.wait(w.store.previews(["open", "closed", "none"])) == {
                "open": OLD["preview"], "closed": OLD["preview"]}
            records = w.wait(w.store.customer_records("c1"))
            assert [r.attributes for r in records] == [OLD, OLD]
            loaded = w.wait(w.store.load_state()).open_tasks
            assert [t.attributes for t in loaded] == [OLD]  # the router keeps what it loaded
        finally:
            w.close()
        schema.downgrade(empty_url, "0020")
        with engine.connect() as conn:
            assert "preview" not in {c["name"] for c in sa.inspect(conn).get_columns("tasks")}
            assert conn.execute(sa.text("SELECT count(*) FROM tasks")).scalar() == 2
    finally:
        engine.dispose()
