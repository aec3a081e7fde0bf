"""Records an operator reads from the command line, without a router: tasks with their
customer, conversation and trail, the quality-review figures, the classifier's training set and
the phones' registrations.

Sits in the service layer over the store ports (`ports.Store`, `AnswerStore`,
`CodificationStore`, `PhoneStore`); the admin edge's `tasks`, `answers`, `categories` and
`phones` commands read through it, so no edge touches a store. Read-only, except
`add_examples` (labelled examples imported for the classifier). Every method returns a Deferred.
"""

from __future__ import annotations

from collections.abc import Sequence

from twisted.internet.defer import Deferred

from dispatcher.domain.tasks import Task

from .ports import (
    AnswerStore,
    Binding,
    CodificationStore,
    Customer,
    MailMessage,
    PhoneStore,
    ReviewFigures,
    Store,
    StoredEvent,
    TaskSummary,
    TrainingExample,
)


class Records:
    def __init__(self, store: Store, answers: AnswerStore, codes: CodificationStore,
                 phones: PhoneStore) -> None:
        self.store = store
        self.answers = answers
        self.codes = codes
        self.phones = phones

    # tasks (`switchboard tasks list | show`)
    def list_tasks(self, state: str | None, queue: str | None, limit: int,
                   newest_first: bool = True) -> Deferred[list[TaskSummary]]:
        return self.store.list_tasks(state, queue, limit, newest_first=newest_first)

    def get_task(self, task_id: str) -> Deferred[TaskSummary | None]:
        return self.store.get_task(task_id)

    def get_customer(self, customer_id: str) -> Deferred[Customer | None]:
        return self.store.get_customer(customer_id)

    def task_events(self, task_id: str) -> Deferred[list[StoredEvent]]:
        return self.store.task_events(task_id)

    def find_mail_task(self, request_number: int | None = None, message_ids: Sequence[str] = (),
                       task_id: str | None = None) -> Deferred[Task | None]:
        return self.store.find_mail_task(request_number, message_ids, task_id)

    def mail_messages(self, task_id: str, content: bool = True) -> Deferred[list[MailMessage]]:
        return self.store.mail_messages(task_id, content)

    # the quality review (`switchboard answers review-report`)
    def review_figures(self) -> Deferred[list[ReviewFigures]]:
        return self.answers.review_figures()

    # the classifier's training set (`switchboard categories list | train`)
    def example_count(self) -> Deferred[int]:
        return self.codes.example_count()

    def examples(self, limit: int) -> Deferred[list[TrainingExample]]:
        return self.codes.examples(limit)

    def add_examples(self, examples: Sequence[TrainingExample]) -> Deferred[None]:
        return self.codes.add_examples(examples)

    # phones (`switchboard phones list`)
    def registrations(self) -> Deferred[list[Binding]]:
        return self.phones.list_bindings()

