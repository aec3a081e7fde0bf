"""The back office: what supervisors do away from the live wallboard — the answer library (with
its versions, import and export), the quality review queue, the mails parked as spam, and
customers (search, card and timeline, corrections, merges). The `/supervisor` page of the
console speaks to it (docs/console-protocol.md, "Answers", "Back office").

Sits in the service layer over `Library` and `Review` (answers.py, review.py), `Codification`,
`Customers` and `History`. What it promises:
- Every use case first checks that the caller is a supervisor: anyone else gets `Forbidden`
  before anything is read or written. The rule is here, once, whatever an edge or a page shows.
- Every change is audited with the supervisor as actor (`supervisor:<id>`): library versions
  (their author) with `answer.saved` / `answer.retired` in the supervisor's log; review
  decisions (`reply.reviewed`); spam releases (`spam.released`); customer corrections
  (`customer.changed`) and merges (`customer.merged`). Each is answered after its commit.
- What is not wired here (no e-mail, no codification, no history) fails with `NotAvailable`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred, fail, maybeDeferred

from dispatcher.domain import events as ev
from dispatcher.domain.answers import ReviewItem
from dispatcher.domain.errors import DomainError, Forbidden

SUPERVISOR = "supervisor"
REVIEW_LIMIT = 100  # held answers listed at once, oldest first


class NotAvailable(DomainError):
    """A use case whose service is not wired in this process."""

    code = "not_available"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks: `sub` (the signed-in id) and `role` (agent, supervisor, integration), as the
    edge verified them."""

    sub: str
    role: str


@dataclass(frozen=True, slots=True)
class HeldAnswer:
    """A held answer with what the customer wrote (`review.Asked`), for the reviewer."""

    item: ReviewItem
    asked: Any


class BackOffice:
    def __init__(self, library: Any = None, review: Any = None, codification: Any = None,
                 customers: Any = None, history: Any = None) -> None:
        self.library = library
        self.review = review
        self.codification = codification
        self.customers = customers
        self.history = history

    def features(self) -> dict[str, bool]:
        return {"answers": self.library is not None,
                "review": self.review is not None,
                "spam": self.codification is not None,
                "customers": self.customers is not None and self.history is not None}

    def _as(self, caller: Caller, what: str, service: Any, fn: Callable[..., Any],
            *args: Any, **kw: Any) -> Deferred[Any]:
        """Run `fn` for a supervisor; Forbidden for anyone else, NotAvailable without
        `service`."""
        if caller.role != SUPERVISOR or not caller.sub:
            return fail(Forbidden(caller.sub, f"{what} (supervisors only)"))
        if service is None:
            return fail(NotAvailable(f"{what} is not available here"))
        return maybeDeferred(fn, *args, **kw)

    # ------------------------------------------------------------------ the answer library

    def answers(self, caller: Caller, include_retired: bool = False) -> Deferred[list[Any]]:
        return self._as(caller, "the answer library", self.library,
                        lambda: self.library.list_answers(include_retired))

    def save_answer(self, caller: Caller, data: Mapping[str, Any]) -> Deferred[Any]:
        """Create an answer or save its next version."""
        return self._as(caller, "saving an answer", self.library, lambda: (
            self.library.save_answer(data, caller.sub, ev.supervisor_actor(caller.sub))))

    def retire_answer(self, caller: Caller, answer_id: str) -> Deferred[Any]:
        return self._as(caller, "retiring an answer", self.library, lambda: (
            self.library.retire_answer(answer_id, caller.sub, ev.supervisor_actor(caller.sub))))

    def answer_versions(self, caller: Caller, answer_id: str) -> Deferred[list[Any]]:
        return self._as(caller, "an answer's versions", self.library,
                        lambda: self.library.history(answer_id))

    def import_answers(self, caller: Caller, lines: Iterable[str], first_line: int = 1,
                       check_only: bool = False) -> Deferred[Any]:
        """JSON Lines (docs/answers.md): every line checked before anything is saved."""
        return self._as(caller, "importing answers", self.library, lambda: (
            self.library.import_answers(list(lines), caller.sub,
                                        ev.supervisor_actor(caller.sub), first_line,
                                        check_only)))

    def export_answers(self, caller: Caller, include_retired: bool = True
                       ) -> Deferred[list[str]]:
        return self._as(caller, "exporting answers", self.library,
                        lambda: self.library.export_answers(include_retired))

    # ------------------------------------------------------------------ the review queue

    def held_answers(self, caller: Caller, limit: int = REVIEW_LIMIT
                     ) -> Deferred[list[HeldAnswer]]:
        """The held answers, oldest first, each with the customer's message."""
        return self._as(caller, "the review queue", self.review,
                        lambda: ensureDeferred(self._held(limit)))

    async def _held(self, limit: int) -> list[HeldAnswer]:
        items = await self.review.held(limit)
        return [HeldAnswer(i, await self.review.asked(i)) for i in items]

    def checklist(self) -> dict[str, int]:
        return dict(self.review.checklist) if self.review is not None else {}

    def decide(self, caller: Caller, item_id: str, decision: str,
               marks: Mapping[str, Any] | None = None, text: str | None = None,
               note: str = "") -> Deferred[ReviewItem]:
        """Approve, edit or reject a held answer with the checklist's ticks (the agent is
        told once it is committed: `Review.listen_decided`)."""
        return self._as(caller, "deciding on a held answer", self.review, lambda: (
            self.review.decide(item_id, caller.sub, decision, marks, text, note)))

    # ------------------------------------------------------------------ spam

    def parked_spam(self, caller: Caller, limit: int | None = None) -> Deferred[Any]:
        return self._as(caller, "the parked spam", self.codification, lambda: (
            self.codification.parked() if limit is None else self.codification.parked(limit)))

    def release_spam(self, caller: Caller, task_id: str, queue: str | None = None
                     ) -> Deferred[Any]:
        """Not spam after all: to the queue it would have gone to (or `queue`)."""
        return self._as(caller, "releasing spam", self.codification, lambda: (
            self.codification.release(task_id, ev.supervisor_actor(caller.sub), queue)))

    # ------------------------------------------------------------------ customers

    def find_customers(self, caller: Caller, query: str) -> Deferred[list[Any]]:
        return self._as(caller, "the customer search", self.customers,
                        lambda: self.customers.search(query))

    def customer(self, caller: Caller, customer_id: str, limit: int | None = None
                 ) -> Deferred[Any]:
        """The card and the timeline (history.CustomerView)."""
        return self._as(caller, "a customer's history", self.history,
                        lambda: self.history.view(customer_id, limit))

    def edit_customer(self, caller: Caller, customer_id: str, name: str,
                      identities: Sequence[tuple[str, str]]) -> Deferred[Any]:
        return self._as(caller, "changing a customer", self.customers, lambda: (
            self.customers.edit(customer_id, name, identities, caller.sub)))

    def merge_customers(self, caller: Caller, survivor_id: str, merged_id: str
                        ) -> Deferred[Any]:
        return self._as(caller, "merging customers", self.history, lambda: (
            self.history.merge(survivor_id, merged_id, caller.sub)))
