"""Domain events: what happened, when, by whom, and why. Every router decision returns them; the
store appends them to the immutable `task_events` / `agent_events` logs in the same transaction
as the state change. `kind` values are wire API: they appear in the log, in reports and in the
console protocol, so they change only with a new name, never in meaning.

This is the one module of event names (the log's kinds): every kind any part of the system
writes is declared here, and services, reports, storage and edges import it from here. The wire
message types of the console and CTI protocols are not log events and stay in their protocol
modules (agent_console/messages.py, channels/phone/messages.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SYSTEM = "system"
OPERATOR = "operator"  # the command line (`switchboard accounts ...`)

# Task events
TASK_CREATED = "task.created"
TASK_QUEUED = "task.queued"  # entered (or re-entered) a queue; data: reason
TASK_OFFERED = "task.offered"  # data: offer_id, agent_id, expires_at, explanation
OFFER_ACCEPTED = "offer.accepted"
OFFER_REJECTED = "offer.rejected"  # data: reason
OFFER_EXPIRED = "offer.expired"
OFFER_WITHDRAWN = "offer.withdrawn"  # taken back: agent left, task cancelled, caller hung up
TASK_ASSIGNED = "task.assigned"  # data: agent_id, via (offer | pick)
TASK_ESCALATED = "task.escalated"  # data: step, requirement, skipped (steps nobody could take)
TASK_WRAP_UP = "task.wrap_up"  # data: until (when it ends by itself), limit (latest end)
TASK_WRAP_UP_EXTENDED = "task.wrap_up_extended"  # data: seconds, until, was
TASK_COMPLETED = "task.completed"  # data: disposition
TASK_CANCELLED = "task.cancelled"  # data: reason
TASK_ABANDONED = "task.abandoned"  # data: waited
TASK_REQUEUED = "task.requeued"  # taken back from an agent; data: reason
TASK_TRANSFERRED = "task.transferred"  # data: from_agent, from_queue, to_queue | to_agent
TASK_CHANGED = "task.changed"  # priority / deadline / attributes changed

# Agent events
AGENT_STATUS = "agent.status"  # data: status, reason
AGENT_CHANGED = "agent.changed"  # skills, queues, capacity changed
AGENT_CHANNELS = "agent.channels"  # per-channel presence; data: channels taking new work
AGENT_DEVICE = "agent.device"  # data: channel, reachable, engaged (phone registered / busy outside)
# Configuration changed on the database while no router ran (the command line; a running server
# reads it at its next start), audited in the agent log: agent_id is the agent changed, or for
# queues and calendars the one who changed them. data: what the change was, and `user`.
AGENT_ADDED = "agent.added"  # data: the agent's configuration
AGENT_REMOVED = "agent.removed"
QUEUE_CHANGED = "queue.changed"  # data: queue, added, the configuration (disabled included)
QUEUE_REMOVED = "queue.removed"  # data: queue, members (the agents it was dropped from)
CALENDAR_CHANGED = "calendar.changed"  # data: calendar, timezone, hours, holidays
# The other configuration the command line changes, in one kind; data: what (phone | category
# | category_rule | response_mode | review_share | answers | articles), action (set | added |
# removed | imported) and what changed (never a secret).
CONFIG_CHANGED = "config.changed"
# Console accounts (in the agent log; agent_id is the account's id, an agent's or a
# supervisor's): data: role, name, disabled, password ("set" | "kept" | "none"), never a hash.
ACCOUNT_CHANGED = "account.changed"
ACCOUNT_REMOVED = "account.removed"  # data: role

# Call events (phone tasks; the call's start is task.created)
CALL_ANSWERED = "call.answered"  # the agent's device answered; data: agent_id
CALL_ENDED = "call.ended"  # data: by (caller | agent | pbx), talk_seconds

# Callback events (phone tasks that are calls to make: dispatcher/service/callbacks.py)
CALLBACK_REQUESTED = "callback.requested"  # data: number, origin, not_before, not_after, kept
#                                            (the waiting call's place kept: ivr)
CALLBACK_DIALLED = "callback.dialled"  # data: number, attempt, agent_id, via (sip | cti)
CALLBACK_REACHED = "callback.reached"  # data: number, attempt, agent_id
CALLBACK_NO_ANSWER = "callback.no_answer"  # data: number, attempt, reason (no_answer | busy |
#                                            timeout | failed | agent_hung_up), final (no retry)
CALLBACK_RETRY = "callback.retry"  # data: attempt (the next), at (not before then)

# E-mail events (dispatcher/service/mail.py)
EMAIL_RECEIVED = "email.received"  # data: message, message_id, from, subject, action, source
EMAIL_LINKED = "email.linked"  # a new task opened for a message that pointed at another task
EMAIL_REOPENED = "email.reopened"  # data: previous_agent, completed_at
EMAIL_QUEUED = "email.queued"  # an outbound message entered the outbox; data: kind, to, mode,
#                                answer_id
EMAIL_ACK_SKIPPED = "email.ack_skipped"  # data: reason
EMAIL_SENT = "email.sent"  # data: message, attempts, reply
EMAIL_RETRY = "email.retry"  # data: message, attempts, error, next_attempt_at
EMAIL_DEAD = "email.dead"  # data: message, attempts, error
EMAIL_AUTOMATIC = "email.automatic"  # a robot's mail recorded on the thread; data: message, kind
EMAIL_BOUNCED = "email.bounced"  # data: message (ours), report (theirs), recipient, status, reason
EMAIL_DELAYED = "email.delayed"  # a report that delivery is delayed; same data
EMAIL_REDIRECTED = "email.redirected"  # data: to, message, note

# Collaboration (dispatcher/service/collaboration.py)
TASK_NOTE = "task.note"  # data: note, text
CONSULT_SENT = "consult.sent"  # data: token, expert, message
CONSULT_ANSWERED = "consult.answered"  # data: token, expert, message
REMINDER_SET = "reminder.set"  # data: reminder, due_at, note
REMINDER_DUE = "reminder.due"  # data: reminder, paused_seconds, deadline
REMINDER_SUPERSEDED = "reminder.superseded"  # data: reminder, reason

# Codification (dispatcher/service/codification.py)
TASK_CATEGORISED = "task.categorised"  # data: category, source, confidence, rule, previous
SPAM_SCORED = "spam.scored"  # data: scored, spam, score, threshold, rules, error, parked
SPAM_RELEASED = "spam.released"  # data: from_queue, to_queue

# Answers and review (dispatcher/service/answers.py, review.py)
ANSWER_SAVED = "answer.saved"  # the author's log; data: answer_id, version, title
ANSWER_RETIRED = "answer.retired"  # the same data
ANSWER_AUTOMATIC = "answer.automatic"  # data: plan (agent|review|send), reason, answer_id, score
REPLY_HELD = "reply.held"  # data: item, agent_id, mode, answer_id
REPLY_REVIEWED = "reply.reviewed"  # data: item, decision, score, max_score, checklist, reviewer,
#                                    agent_id, mode, answer_id

# Customers (dispatcher/service/history.py, customers.py)
CUSTOMER_MERGED = "customer.merged"  # data: survivor_id, merged_id, supervisor_id
CUSTOMER_CHANGED = "customer.changed"  # data: customer_id, name, was, added, removed


# Not frozen: a frozen dataclass costs ~1 us more to build, and the router builds one per
# decision. Treated as immutable all the same: nothing assigns to a field after creation.
@dataclass(slots=True)
class Event:
    kind: str
    at: float
    task_id: str | None = None
    agent_id: str | None = None
    actor: str = SYSTEM
    data: Mapping[str, Any] = field(default_factory=dict)


def agent_actor(agent_id: str) -> str:
    return f"agent:{agent_id}"


def supervisor_actor(supervisor_id: str) -> str:
    """The actor of a supervisor's action (balancing, merges): `supervisor:<id>`."""
    return f"supervisor:{supervisor_id}"
