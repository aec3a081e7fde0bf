"""Typed errors of the routing domain.

Every rule the domain enforces fails with one of these; the edges translate `code` into their
protocol's own error (a WebSocket `error` frame, an HTTP status, a CLI exit message)."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every domain rule violation. `code` is stable wire API (snake_case)."""

    code = "domain_error"


class IllegalTransition(DomainError):
    code = "illegal_transition"

    def __init__(self, task_id: str, current: str, wanted: str) -> None:
        super().__init__(f"task {task_id}: cannot go from {current} to {wanted}")
        self.task_id, self.current, self.wanted = task_id, current, wanted


class UnknownTask(DomainError):
    code = "unknown_task"

    def __init__(self, task_id: str) -> None:
        super().__init__(f"no such task: {task_id}")
        self.task_id = task_id


class UnknownAgent(DomainError):
    code = "unknown_agent"

    def __init__(self, agent_id: str) -> None:
        super().__init__(f"no such agent: {agent_id}")
        self.agent_id = agent_id


class UnknownQueue(DomainError):
    code = "unknown_queue"

    def __init__(self, queue: str) -> None:
        super().__init__(f"no such queue: {queue}")
        self.queue = queue


class UnknownSubscription(DomainError):
    """No webhook subscription has this id."""

    code = "unknown_subscription"

    def __init__(self, subscription_id: str) -> None:
        super().__init__(f"no such webhook subscription: {subscription_id}")
        self.subscription_id = subscription_id


class UnknownDelivery(DomainError):
    """The webhook subscription has no delivery with this id."""

    code = "unknown_delivery"

    def __init__(self, subscription_id: str, delivery_id: int) -> None:
        super().__init__(f"no such delivery {delivery_id} of webhook subscription "
                         f"{subscription_id}")
        self.subscription_id, self.delivery_id = subscription_id, delivery_id


class QueueDisabled(UnknownQueue):
    """The queue is kept but takes no new tasks (`switchboard queues disable`); handled like an
    unknown queue by whoever handles those."""

    code = "queue_disabled"

    def __init__(self, queue: str) -> None:
        DomainError.__init__(self, f"queue {queue} is disabled: it takes no new tasks")
        self.queue = queue


class AgentDisabled(DomainError):
    code = "agent_disabled"

    def __init__(self, agent_id: str) -> None:
        super().__init__(f"agent {agent_id} is disabled: they take no work")
        self.agent_id = agent_id


class InUse(DomainError):
    """A queue or an agent cannot be removed or disabled while work waits in it or is held."""

    code = "in_use"


class DuplicateTask(DomainError):
    code = "duplicate_task"

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task already known: {task_id}")
        self.task_id = task_id


class OfferNotCurrent(DomainError):
    """An accept or reject for an offer that expired, was taken back or never existed
    (fencing by offer id: a late accept fails cleanly)."""

    code = "offer_not_current"

    def __init__(self, offer_id: str) -> None:
        super().__init__(f"offer {offer_id} is no longer current")
        self.offer_id = offer_id


class Forbidden(DomainError):
    """An agent acted on a task or an offer that is not theirs."""

    code = "forbidden"

    def __init__(self, agent_id: str, what: str) -> None:
        super().__init__(f"agent {agent_id} may not act on {what}")
        self.agent_id, self.what = agent_id, what


class NotEligible(DomainError):
    """The agent lacks the skills, the capacity or the presence the action needs."""

    code = "not_eligible"

    def __init__(self, agent_id: str, task_id: str, reason: str) -> None:
        super().__init__(f"agent {agent_id} cannot take task {task_id}: {reason}")
        self.agent_id, self.task_id, self.reason = agent_id, task_id, reason


class TaskTaken(NotEligible):
    """A pick of a task that no longer waits: another agent took it first (or it was offered,
    by a supervisor, to someone)."""

    code = "task_taken"

    def __init__(self, agent_id: str, task_id: str, state: str) -> None:
        super().__init__(agent_id, task_id, f"it is {state} now: someone else took it first")
        self.state = state


class InvalidValue(DomainError):
    """A value outside the model's range (a skill level above 10, a negative capacity...)."""

    code = "invalid_value"
