"""The customer history cache: what it serves equals a fresh read of the store after every step
of a customer's tasks (intake, offer, accept, wrap-up, complete, a new message, a new task), on
the MemoryStore and on SqlStore (SQLite and PostgreSQL); edits and merges reach it; a read that
overlapped a write is not kept; the bound holds."""

from __future__ import annotations

import copy

import pytest
from twisted.internet.defer import Deferred, ensureDeferred

from dispatcher.domain import events as ev
from dispatcher.domain.tasks import Channel
from dispatcher.service.customers import Customers
from dispatcher.service.history import History
from dispatcher.service.history_cache import (
    PASSED_THROUGH,
    WATCHED,
    HistoryCache,
    WatchedStore,
)
from dispatcher.service.intake import email_identity, phone_identity
from dispatcher.service.mail import InboundMail, Mail
from dispatcher.service.ports import Changes, MailMessage, Store
from dispatcher.storage.memory import MemoryStore
from tests.dispatcher.service.stacks import HeldStore, Stack, build_stack, support_queue
from tests.dispatcher.storage.wiring import SQL_BACKENDS, url_for, wire


class Both:
    """A stack whose store is watched by a cache, with a History on the cache and one reading
    the store itself (the fresh read)."""

    def __init__(self, stack: Stack, inner, cache: HistoryCache) -> None:
        self.stack, self.inner, self.cache = stack, inner, cache
        self.cached = History(stack.store, stack.assignment, cache=cache)
        self.fresh = History(inner, stack.assignment)

    def same(self, customer_id: str, served_from_memory: bool = True):
        at_once = self.cached.cached(customer_id)  # from memory, or None (nothing read)
        assert (at_once is not None) == served_from_memory
        hits = self.cache.hits
        d = self.cached.view(customer_id)
        assert (self.cache.hits > hits) == served_from_memory, "expected the view " + (
            "from memory" if served_from_memory else "to be read")
        assert d.called or not served_from_memory  # from memory: no wait at all
        cached = self.stack.wait(d)
        fresh = self.stack.wait(self.fresh.view(customer_id))
        assert cached == fresh
        assert at_once is None or at_once is cached  # the same version of the card
        return cached


@pytest.fixture(params=["memory", *SQL_BACKENDS])
def both(request) -> Both:
    cache = HistoryCache(customers=100)
    if request.param == "memory":
        inner = MemoryStore()
        stack = build_stack(WatchedStore(inner, cache))
    else:
        from dispatcher.storage import schema

        url = (f"sqlite:///{request.getfixturevalue('tmp_path')}/cache.db"
               if request.param == "sqlite" else url_for(request.param, request))
        schema.upgrade(url)
        w = wire(url)
        request.addfinalizer(w.close)
        inner = w.store
        stack = build_stack(WatchedStore(inner, cache), wait=w.wait,
                            settle=lambda: w.wait(w.commit.drain()))
    stack.put_queue(support_queue())
    return Both(stack, inner, cache)


def settle_reads(both: Both) -> None:
    """Let the prefetches in flight finish (SQL: drive the pool until each one fired)."""
    both.stack.settle()
    while both.cache._fills:
        d: Deferred = Deferred()
        d.addErrback(lambda _: None)
        next(iter(both.cache._fills.values())).waiters.append(d)
        both.stack.wait(d)


def test_a_customers_journey_is_served_from_memory_and_equals_a_fresh_read(both):
    s = both.stack
    s.put_agent("a1", 6)
    first = s.wait(s.intake.submit(Channel.EMAIL, "support", identity=email_identity(
        "ann@example.org"), customer_name="Ann", attributes={"subject": "Invoice 12",
                                                             "text": "Hello,\n\nmy invoice"}))
    s.settle()
    customer = first.customer_id
    settle_reads(both)
    assert customer in both.cache  # prefetched after the intake's commit
    both.same(customer)
    s.login("a1")  # the offer
    assert both.same(customer).timeline[0].state == "offered"
    s.wait(s.sessions.accept("a1", s.last_offer("a1").id))
    s.settle()
    entry = both.same(customer).timeline[0]
    assert entry.state == "assigned" and entry.agent_id == "a1" and entry.answered_at
    s.advance(40)
    # A new message on the task: its row (preview) and an event, as Mail.add_mail writes them.
    task = s.router.tasks[first.id]
    task.attributes["preview"] = "Any news?"
    s.wait(s.store.add_mail([MailMessage(id="m2", task_id=first.id, direction="in",
                                         kind="customer", created_at=s.clock.seconds(),
                                         raw=b"Subject: x\r\n\r\nAny news?\r\n")],
                            Changes(tasks=[task], events=[ev.Event(
                                "email.received", s.clock.seconds(), first.id)])))
    assert both.same(customer).timeline[0].preview == "Any news?"
    s.wait(s.sessions.complete("a1", first.id, "solved"))
    s.settle()
    entry = both.same(customer).timeline[0]
    assert entry.state == "completed" and entry.disposition == "solved"
    # A call from the same customer (another identity of theirs is not needed: the same
    # address) joins the timeline newest first, before any read.
    s.advance(60)
    second = s.call(identity=email_identity("ann@example.org"))
    assert second.customer_id == customer
    view = both.same(customer)
    assert [e.task_id for e in view.timeline] == [second.id, first.id]
    assert view.card.open_tasks == (second.id,)
    s.advance(20)  # the call's offer times out: re-queued, the agent not responding
    both.same(customer)
    assert both.cache.hits > 0


def test_an_edit_and_a_merge_reach_the_cache(both):
    s = both.stack
    ann = s.call(identity=phone_identity("+3225550100"), customer_name="Ann")
    bob = s.call(identity=phone_identity("+3225550101"), customer_name="Bob")
    settle_reads(both)
    both.same(ann.customer_id)
    both.same(bob.customer_id)
    customers = Customers(s.store, s.clock)
    s.wait(ensureDeferred(customers.edit(
        ann.customer_id, "Ann Smith", [("phone", "+3225550100"), ("email", "ann@example.org")],
        "sup1")))
    view = both.same(ann.customer_id)
    assert view.card.name == "Ann Smith" and len(view.card.identities) == 2
    s.wait(both.cached.merge(ann.customer_id, bob.customer_id, "sup1"))
    s.settle()
    assert ann.customer_id not in both.cache and bob.customer_id not in both.cache
    view = both.same(ann.customer_id, served_from_memory=False)
    assert {e.task_id for e in view.timeline} == {ann.id, bob.id}
    settle_reads(both)
    both.same(ann.customer_id)  # kept again after the read


def test_a_new_customer_is_kept_at_their_intake_without_a_read(both):
    s = both.stack
    s.put_agent("a1", 6)
    s.login("a1")
    # Two first contacts of one caller in the same turn (one group commit on SQL: the first
    # creates the customer, the second joins them), and a caller without an identity.
    caller = phone_identity("+3225550177")
    ds = [s.intake.submit(Channel.PHONE, "support", identity=caller, customer_name="Cy")
          for _ in range(2)]
    first, second = (s.wait(d) for d in ds)
    anonymous = s.call(identity=None)
    s.settle()
    assert first.customer_id == second.customer_id != anonymous.customer_id
    assert both.cache.reads == 0 and both.cache.born == 2 and not both.cache._fills
    view = both.same(first.customer_id)
    assert view.card.name == "Cy" and view.card.identities == (caller,)
    assert {e.task_id for e in view.timeline} == {first.id, second.id}
    assert "offered" in {e.state for e in view.timeline}  # the offer's write reached it
    assert both.same(anonymous.customer_id).timeline[0].task_id == anonymous.id
    # An e-mail's first contact too (the mail intake's transaction tells the same).
    mail = s.wait(s.intake.commit(s.intake.draft(Channel.EMAIL, "support", attributes={
        "subject": "Hello"}), email_identity("dee@example.org"), "Dee"))
    assert mail.new is not None and both.cache.born == 3
    assert both.same(mail.customer_id).timeline[0].subject == "Hello"
    assert both.cache.reads == 0


class HeldReads(HeldStore):
    """A HeldStore whose intakes and history reads answer only when released (what they store
    or read is taken at call time), and whose `record` calls are committed at once."""

    def __init__(self) -> None:
        super().__init__(hold_intake=True)

    def record(self, changes: Changes) -> Deferred:
        return self.inner.record(changes)

    def customer_history(self, customer_id: str, limit: int = 50) -> Deferred:
        return self._hold(self.inner.customer_history(customer_id, limit))


def test_a_first_contact_is_not_kept_from_the_intake_when_a_read_is_under_way():
    """Two intakes of one new caller in one transaction, their commits told joiner first: the
    joiner's prefetch is under way when the creator's word comes, which then waits for it."""
    held = HeldReads()
    cache = HistoryCache(customers=10)
    stack = build_stack(WatchedStore(held, cache))
    stack.put_queue(support_queue())
    caller = phone_identity("+3225550100")
    creator, joiner = (stack.intake.submit(Channel.PHONE, "support", identity=caller)
                       for _ in range(2))
    value, d = held.held.pop(1)  # the joiner's commit is told first: a prefetch starts
    d.callback(value)
    value, d = held.held.pop(0)  # then the creator's
    d.callback(value)
    customer = stack.wait(creator).customer_id
    assert stack.wait(joiner).customer_id == customer
    assert customer not in cache and cache.born == 0 and cache.reads == 1
    held.release()  # the read answers: both tasks, kept
    view = stack.wait(cache.view(customer, 20))
    assert cache.hits == 1
    assert view == stack.wait(History(held.inner, stack.assignment).view(customer))
    assert len(view.timeline) == 2


class LateStore(HeldStore):
    """A MemoryStore whose `record` calls are neither visible nor acknowledged until released
    (the data copied at call time, as the port says)."""

    def record(self, changes: Changes):
        snapshot = Changes(tasks=[copy.deepcopy(t) for t in changes.tasks],
                           events=list(changes.events), declines=list(changes.declines))
        d: Deferred = Deferred()
        self.held.append((snapshot, d))
        return d

    def release(self) -> None:
        while self.held:
            changes, d = self.held.pop(0)
            self.inner.record(changes).chainDeferred(d)


@pytest.mark.parametrize("store", [HeldStore, LateStore], ids=["seen", "not-seen"])
def test_a_read_that_overlaps_a_write_is_kept_with_the_write_counted_once(store):
    held = store()
    cache = HistoryCache(customers=10)
    stack = build_stack(WatchedStore(held, cache))
    stack.put_queue(support_queue())
    held.release()
    stack.put_agent("a1", 6)
    held.release()
    task = stack.wait(stack.intake.submit(Channel.PHONE, "support",
                                          identity=phone_identity("+3225550100")))
    held.release()
    customer = task.customer_id
    login = stack.sessions.login("a1")  # the offer's write is held: in flight
    held.release()
    assert login.called
    offer = stack.last_offer("a1")
    cache.drop(customer)
    accept = stack.sessions.accept("a1", offer.id)  # in flight while the read runs
    history = History(stack.store, stack.assignment, cache=cache)
    read = history.view(customer)
    assert read.called and customer in cache  # the read (seen or not) accounts for it
    held.release()
    assert accept.called
    fresh = stack.wait(History(held.inner, stack.assignment).view(customer))
    assert stack.wait(history.view(customer)) == fresh
    assert fresh.timeline[0].state == "assigned" and fresh.timeline[0].answered_at


def test_a_read_that_overlaps_a_write_it_cannot_tell_is_not_kept_then_read_again():
    held = HeldStore()
    cache = HistoryCache(customers=10)
    stack = build_stack(WatchedStore(held, cache))
    stack.put_queue(support_queue())
    task = stack.wait(stack.intake.submit(Channel.PHONE, "support",
                                          identity=phone_identity("+3225550100")))
    held.release()
    customer = task.customer_id
    cache.drop(customer)
    row = stack.router.tasks[task.id]
    write = stack.store.record(Changes(tasks=[row]))  # a row without an event
    stack.wait(History(stack.store, stack.assignment, cache=cache).view(customer))
    assert customer not in cache
    held.release()
    assert write.called and customer in cache  # read again once the write settled


def test_the_cache_is_bounded_least_recently_used_first_out():
    cache = HistoryCache(customers=2)
    stack = build_stack(WatchedStore(MemoryStore(), cache))
    stack.put_queue(support_queue())
    ids = [stack.call(identity=phone_identity(f"+322555010{i}")).customer_id for i in range(3)]
    assert len(cache) == 2 and ids[0] not in cache
    assert stack.wait(cache.view(ids[1], 20)).card.id == ids[1]  # used: now the newest
    stack.call(identity=phone_identity("+3225550109"))
    assert ids[1] in cache and ids[2] not in cache


def test_no_cache_when_sized_zero_still_answers():
    cache = HistoryCache(customers=0)
    stack = build_stack(WatchedStore(MemoryStore(), cache))
    stack.put_queue(support_queue())
    task = stack.call(identity=phone_identity("+3225550100"))
    assert len(cache) == 0
    assert stack.wait(cache.view(task.customer_id, 20)).timeline[0].task_id == task.id


def test_every_method_of_the_store_port_is_watched_or_passed_through_knowingly():
    methods = {name for name, value in vars(Store).items()
               if callable(value) and not name.startswith("_")}
    assert methods == WATCHED | PASSED_THROUGH, (
        "a Store method was added or removed: does it write tasks, events or customers "
        "(WATCHED, and WatchedStore tells the cache), or not (PASSED_THROUGH)?")
    assert all(name in vars(WatchedStore) for name in WATCHED)


def test_a_rows_preview_is_made_once_per_source_text_and_again_when_it_changes():
    from dispatcher.domain.tasks import Task, TaskState
    from dispatcher.service.history_cache import _Row

    text = "Hello,\n\n  my parcel\nnever came  \n\nthird line\nfourth line"
    task = Task(id="t1", channel=Channel.EMAIL, queue="support", customer_id="c1",
                created_at=1.0, attributes={"subject": "Parcel", "preview": text})
    first = _Row.of(task)
    assert first.preview == "Hello,\nmy parcel\nnever came"
    task.state = TaskState.OFFERED
    second = _Row.of(task, first)
    assert second.state == "offered" and second.channel == "email"
    assert second.preview is first.preview  # the same source string: not made again
    task.attributes["preview"] = "Any news?"  # changed in place: another string
    third = _Row.of(task, second)
    assert third.preview == "Any news?"
    no_source = _Row.of(Task(id="t1", channel=Channel.EMAIL, queue="support", customer_id="c1",
                             created_at=1.0))
    assert no_source.source is None and _Row.of(task, no_source).preview == "Any news?"
    call = Task(id="t2", channel=Channel.PHONE, queue="support", customer_id="c1",
                created_at=1.0, attributes={"preview": text})
    assert _Row.of(call).preview is None and _Row.of(call).source is None


def test_a_mails_preview_stored_apart_stays_on_its_timeline_through_its_changes(both):
    """A mail's preview is stored with its task (NewMail.preview), not among the attributes the
    router holds: the timeline shows it from the intake on, through the task's later rows
    (which do not carry it), equal to a fresh read; and read again once dropped."""
    s = both.stack
    s.put_agent("a1", 6)
    mail = Mail(s.assignment, s.store, s.clock, s.intake)
    got = s.wait(mail.receive(InboundMail(
        raw=b"Subject: Parcel\r\n\r\nHello\r\n", queue="support", from_address="bob@example.org",
        envelope_from="bob@example.org", from_name="Bob", subject="Parcel",
        text="Hello,\n\nmy parcel never came.\n", message_id="parcel-1@example.org")))
    s.settle()
    settle_reads(both)
    assert "preview" not in s.router.tasks[got.task_id].attributes
    shown = "Hello,\nmy parcel never came."
    assert both.same(got.customer_id).timeline[0].preview == shown
    s.login("a1")  # offered: a row of the router's task, without the preview
    assert both.same(got.customer_id).timeline[0].state == "offered"
    s.wait(s.sessions.accept("a1", s.last_offer("a1").id))
    s.settle()
    s.wait(s.sessions.complete("a1", got.task_id, "solved"))
    s.settle()
    entry = both.same(got.customer_id).timeline[0]
    assert (entry.state, entry.preview) == ("completed", shown)
    both.cache.drop(got.customer_id)
    assert both.same(got.customer_id, served_from_memory=False).timeline[0].preview == shown


def test_a_row_of_a_task_whose_preview_is_stored_apart_keeps_the_entrys():
    """A row made without the entry at hand (the write issued while the customer was being
    read) does not take the preview off the entry when it is applied."""
    from dispatcher.domain.tasks import Task, TaskState
    from dispatcher.service.history_cache import _apply, _Entry, _Row, _Write

    task = Task(id="t1", channel=Channel.EMAIL, queue="support", customer_id="c1",
                created_at=1.0, attributes={"subject": "Parcel"})
    created = _Row.of(task, stored="Hello,\n\nmy parcel")
    assert created.preview == "Hello,\nmy parcel"
    task.state = TaskState.OFFERED
    assert _Row.of(task, created).preview == "Hello,\nmy parcel"  # lent by the row before
    entry, later = _Entry(created), _Row.of(task)
    assert later.preview is None
    _apply(entry, _Write({"c1"}, rows={"t1": later}), "t1")
    assert (entry.row.state, entry.row.preview) == ("offered", "Hello,\nmy parcel")
