"""The database schema as SQLAlchemy Core tables: the one `MetaData`, Alembic's autogenerate target.

Sits under `dispatcher.storage`; only the storage modules (`sql.py`, `schema.py`) and Alembic's
`env.py` import it. Migrations never do: each revision in `migrations/versions/` spells out its
own frozen copy of the tables, and a test proves that upgrading to head yields exactly this
metadata. Times are float seconds since the epoch everywhere; structured values are JSON.
"""

from __future__ import annotations

import sqlalchemy as sa

from dispatcher.domain.events import EMAIL_QUEUED

# Stable constraint and index names, so migrations can refer to them on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

OUTBOX_PENDING = "pending"
TASKS_FILLFACTOR = 70  # percent of each page of `tasks` that inserts fill (PostgreSQL)

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

# 64-bit ids for the append-only logs on PostgreSQL; SQLite's rowid alias must be "INTEGER".
LogId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Time = sa.Float

customers = sa.Table(
    "customers",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("name", sa.String, nullable=False),
    sa.Column("created_at", Time, nullable=False),
)

customer_identities = sa.Table(
    "customer_identities",
    metadata,
    sa.Column("kind", sa.String, nullable=False),
    sa.Column("value", sa.String, nullable=False),
    sa.Column("customer_id", sa.String, sa.ForeignKey("customers.id"), nullable=False),
    sa.UniqueConstraint("kind", "value"),
    sa.Index(None, "customer_id"),
)

agents = sa.Table(
    "agents",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("name", sa.String, nullable=False),
    sa.Column("capacity_email", sa.Integer, nullable=False),
    sa.Column("capacity_phone", sa.Integer, nullable=False),
    sa.Column("channels", sa.JSON, nullable=False),  # sorted list of channel names
    sa.Column("created_at", Time, nullable=False),
    # Disabled: kept (and their work served) but may not take work (migration 0009).
    sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
    # What requirement expressions read beside skills: {name: value} (migration 0018).
    sa.Column("attributes", sa.JSON, nullable=False, server_default=sa.text("'{}'")),
    # Their own interruption matrix {held: [channels]}, NULL: the centre's (migration 0018).
    sa.Column("interruptions", sa.JSON, nullable=True),
)

agent_skills = sa.Table(
    "agent_skills",
    metadata,
    sa.Column("agent_id", sa.String, sa.ForeignKey("agents.id"), primary_key=True),
    sa.Column("skill", sa.String, primary_key=True),
    sa.Column("level", sa.Integer, nullable=False),
)

agent_queues = sa.Table(
    "agent_queues",
    metadata,
    sa.Column("agent_id", sa.String, sa.ForeignKey("agents.id"), primary_key=True),
    sa.Column("queue", sa.String, primary_key=True),
)

queues = sa.Table(
    "queues",
    metadata,
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("requirement", sa.JSON, nullable=False),  # {skill: level}
    # [{"after_seconds", "requirement", "expression"?}]
    sa.Column("steps", sa.JSON, nullable=False),
    sa.Column("mode", sa.String, nullable=False),
    sa.Column("agent_choice", sa.String, nullable=False),
    sa.Column("priority", sa.Integer, nullable=False),
    sa.Column("sl_target", sa.JSON, nullable=False),  # {channel: seconds}
    sa.Column("sl_share", sa.Float, nullable=False),
    sa.Column("offer_timeout", sa.JSON, nullable=False),  # {channel: seconds}
    sa.Column("wrap_up_seconds", sa.Float, nullable=False),
    sa.Column("calendar", sa.String, nullable=True),
    sa.Column("deadline_rule", sa.String, nullable=True),
    # [{"code": "solved", "label": "Solved"}, ...]; empty: any code (migration 0006)
    sa.Column("dispositions", sa.JSON, nullable=False, server_default=sa.text("'[]'")),
    # Disabled: kept (and its waiting work served) but takes no new tasks (migration 0009).
    sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
    # The requirement expression, "" for none (migration 0018).
    sa.Column("expression", sa.String, nullable=False, server_default=sa.text("''")),
    # Agents kept free for its calls while they are at risk (migration 0018).
    sa.Column("reserve", sa.Integer, nullable=False, server_default=sa.text("0")),
)

calendars = sa.Table(
    "calendars",
    metadata,
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("timezone", sa.String, nullable=False),
    sa.Column("hours", sa.JSON, nullable=False),  # {weekday: [["09:00", "17:00"], ...]}
    sa.Column("holidays", sa.JSON, nullable=False),  # [ISO date, ...]
)

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("channel", sa.String, nullable=False),
    sa.Column("queue", sa.String, nullable=False),
    sa.Column("customer_id", sa.String, nullable=True),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("base_skills", sa.JSON, nullable=False),
    sa.Column("priority", sa.Integer, nullable=False),
    sa.Column("deadline", Time, nullable=True),
    sa.Column("attributes", sa.JSON, nullable=False),
    sa.Column("state", sa.String, nullable=False),
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("required_skills", sa.JSON, nullable=False),
    sa.Column("agent_id", sa.String, nullable=True),
    sa.Column("offer_id", sa.String, nullable=True),
    sa.Column("offer_expires_at", Time, nullable=True),
    sa.Column("step_started_at", Time, nullable=True),
    sa.Column("updated_at", Time, nullable=True),
    # An e-mail's preview (0021): written once, with the task's first row, never by a change
    # (bulk.py `TASK_COLUMNS`), read by what shows stored tasks (rows.py `stored_attributes`);
    # the router's tasks do not hold it.
    sa.Column("preview", sa.Text, nullable=True),
    sa.Index(None, "state", "queue"),
    sa.Index(None, "customer_id", "created_at"),
    # Keyset pages of the task list, newest first (0012): all tasks, by queue, by agent.
    sa.Index(None, "created_at", "id"),
    sa.Index(None, "queue", "created_at", "id"),
    sa.Index(None, "agent_id", "created_at"),
    # Room on each page for the next versions of its rows (migration 0014): an update stays on
    # its page and logs only the bytes that changed.
    postgresql_with={"fillfactor": TASKS_FILLFACTOR},
)

task_declines = sa.Table(
    "task_declines",
    metadata,
    sa.Column("task_id", sa.String, primary_key=True),
    sa.Column("agent_id", sa.String, primary_key=True),
)

def _event_log(name: str, owner: str) -> sa.Table:
    """An append-only event log, read per `owner` (task_id or agent_id) in order of id."""
    return sa.Table(
        name,
        metadata,
        sa.Column("id", LogId, primary_key=True, autoincrement=True),
        sa.Column("task_id", sa.String, nullable=owner != "task_id"),
        sa.Column("agent_id", sa.String, nullable=owner != "agent_id"),
        sa.Column("kind", sa.String, nullable=False),
        sa.Column("at", Time, nullable=False),
        sa.Column("actor", sa.String, nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Index(None, owner, "id"),
        sa.Index(None, "at"),
    )


task_events = _event_log("task_events", "task_id")
agent_events = _event_log("agent_events", "agent_id")

# Replies sent with an answer of the library (`email.queued` naming an `answer_id`), newest
# first: the past replies the suggestions learn from (answers.py `thd_answered_examples`), read
# at every start. A partial index (migration 0020), so that read walks those events only, not
# the whole log; a query uses it only when its WHERE names the same terms (`ANSWERED_WHERE`).
ANSWERED_WHERE = {
    "sqlite": f"kind = '{EMAIL_QUEUED}' AND json_extract(data, '$.answer_id') IS NOT NULL",
    "postgresql": f"kind = '{EMAIL_QUEUED}' AND (data ->> 'answer_id') IS NOT NULL",
}
sa.Index("ix_task_events_answered", task_events.c.id,
         sqlite_where=sa.text(ANSWERED_WHERE["sqlite"]),
         postgresql_where=sa.text(ANSWERED_WHERE["postgresql"]))

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", LogId, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String, nullable=False),
    sa.Column("task_id", sa.String, nullable=True),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("state", sa.String, nullable=False, server_default=OUTBOX_PENDING),
    sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
    sa.Column("next_attempt_at", Time, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Index(None, "state", "next_attempt_at"),
)

# --- e-mail (migration 0002) -------------------------------------------------------------------

email_requests = sa.Table(
    "email_requests",
    metadata,
    sa.Column("number", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("task_id", sa.String, nullable=False),
    sa.UniqueConstraint("task_id"),
)

# Request numbers on PostgreSQL (migration 0013), taken in the transaction that stores the task
# (lookups.py `take_request_numbers`); SQLite takes the highest stored number plus one.
email_request_numbers = sa.Sequence("email_request_numbers", metadata=metadata)

email_messages = sa.Table(
    "email_messages",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("task_id", sa.String, nullable=False),
    sa.Column("direction", sa.String, nullable=False),  # in | out
    sa.Column("kind", sa.String, nullable=False),  # customer | reply | ack
    sa.Column("created_at", Time, nullable=False),
    sa.Column("message_id", sa.String, nullable=True),
    sa.Column("in_reply_to", sa.String, nullable=True),
    sa.Column("refs", sa.JSON, nullable=False),  # [Message-ID, ...]
    sa.Column("peer", sa.String, nullable=True),
    sa.Column("from_addr", sa.String, nullable=True),
    sa.Column("to_addrs", sa.JSON, nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("text_body", sa.Text, nullable=False),
    sa.Column("html_body", sa.Text, nullable=False),
    sa.Column("raw", sa.LargeBinary, nullable=False),
    sa.Column("defects", sa.JSON, nullable=False),
    sa.Column("malformed", sa.Boolean, nullable=False),
    sa.Column("source", sa.String, nullable=True),
    sa.Column("status", sa.String, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    # migration 0006: Cc apart from To, and the address replies go to when it is not From
    sa.Column("cc_addrs", sa.JSON, nullable=False, server_default=sa.text("'[]'")),
    sa.Column("reply_to", sa.String, nullable=True),
    sa.UniqueConstraint("source"),
    sa.Index(None, "task_id", "created_at"),
    sa.Index(None, "message_id"),
    sa.Index(None, "peer", "kind", "created_at"),
)

email_attachments = sa.Table(
    "email_attachments",
    metadata,
    sa.Column("id", LogId, primary_key=True, autoincrement=True),
    sa.Column("message_id", sa.String, sa.ForeignKey("email_messages.id"), nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("filename", sa.String, nullable=True),
    sa.Column("content_type", sa.String, nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("content", sa.LargeBinary, nullable=True),
    sa.Column("path", sa.String, nullable=True),
    sa.Column("content_id", sa.String, nullable=True),  # inline parts (cid:), migration 0006
    sa.Index(None, "message_id"),
)

# Migration 0008: email_messages and email_attachments are append-only (triggers, like the event
# logs: a message is the evidence of what was written); a delivery status is appended here, and
# a message's status is its newest row here, else the status it was stored with.
email_statuses = sa.Table(
    "email_statuses",
    metadata,
    sa.Column("id", LogId, primary_key=True, autoincrement=True),
    sa.Column("message_id", sa.String, sa.ForeignKey("email_messages.id"), nullable=False),
    sa.Column("at", Time, nullable=False),
    sa.Column("status", sa.String, nullable=False),  # queued | retrying | sent | dead | bounced
    sa.Column("error", sa.Text, nullable=True),
    sa.Index(None, "message_id", "id"),
)

# Files an agent uploaded for a reply (HTTP, before the reply is sent); they become the reply's
# attachments, and are dropped once used or after a day (migration 0006).
email_uploads = sa.Table(
    "email_uploads",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("owner", sa.String, nullable=False),  # the agent who uploaded it
    sa.Column("filename", sa.String, nullable=False),
    sa.Column("content_type", sa.String, nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("content", sa.LargeBinary, nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Index(None, "owner"),
)

# --- phone (migration 0003) --------------------------------------------------------------------

# An agent's phone: SIP credentials (digest HA1s, never the password) and/or a PBX extension.
phone_accounts = sa.Table(
    "phone_accounts",
    metadata,
    sa.Column("agent_id", sa.String, primary_key=True),
    sa.Column("sip_user", sa.String, nullable=True),
    sa.Column("realm", sa.String, nullable=False),
    sa.Column("ha1_md5", sa.String, nullable=True),
    sa.Column("ha1_sha256", sa.String, nullable=True),
    sa.Column("extension", sa.String, nullable=True),
    sa.Column("updated_at", Time, nullable=False),
    sa.UniqueConstraint("sip_user"),
    sa.UniqueConstraint("extension"),
)

# The contact each agent's phone registered last (the registrar's bindings, kept over restarts).
phone_bindings = sa.Table(
    "phone_bindings",
    metadata,
    sa.Column("agent_id", sa.String, primary_key=True),
    sa.Column("contact", sa.String, nullable=False),
    sa.Column("expires_at", Time, nullable=False),
    sa.Column("source", sa.String, nullable=False),
    sa.Column("call_id", sa.String, nullable=False),
    sa.Column("cseq", sa.Integer, nullable=False),
)

# --- answers, knowledge base, response modes, quality review (migration 0004) ------------------

# The answer library: each answer at its current version (versions below keep every one).
answers = sa.Table(
    "answers",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("title", sa.String, nullable=False),
    sa.Column("text_body", sa.Text, nullable=False),
    sa.Column("html_body", sa.Text, nullable=False),
    sa.Column("language", sa.String, nullable=False),
    sa.Column("queues", sa.JSON, nullable=False),  # [queue, ...]; [] = every queue
    sa.Column("categories", sa.JSON, nullable=False),  # [category, ...]; [] = every category
    sa.Column("owner", sa.String, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
    sa.Column("retired", sa.Boolean, nullable=False),
)

answer_versions = sa.Table(
    "answer_versions",
    metadata,
    sa.Column("answer_id", sa.String, primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("title", sa.String, nullable=False),
    sa.Column("text_body", sa.Text, nullable=False),
    sa.Column("html_body", sa.Text, nullable=False),
    sa.Column("language", sa.String, nullable=False),
    sa.Column("queues", sa.JSON, nullable=False),
    sa.Column("categories", sa.JSON, nullable=False),
    sa.Column("owner", sa.String, nullable=False),
    sa.Column("author", sa.String, nullable=False),
    sa.Column("at", Time, nullable=False),
    sa.Column("retired", sa.Boolean, nullable=False),
)

# Knowledge-base (FAQ) articles, public on /help, and what visitors did with them.
kb_articles = sa.Table(
    "kb_articles",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("question", sa.Text, nullable=False),
    sa.Column("answer", sa.Text, nullable=False),
    sa.Column("category", sa.String, nullable=False),
    sa.Column("language", sa.String, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
    sa.Column("retired", sa.Boolean, nullable=False),
)

kb_feedback = sa.Table(
    "kb_feedback",
    metadata,
    sa.Column("id", LogId, primary_key=True, autoincrement=True),
    sa.Column("article_id", sa.String, nullable=False),
    sa.Column("at", Time, nullable=False),
    sa.Column("helped", sa.Boolean, nullable=True),  # NULL: a view
    sa.Index(None, "article_id"),
)

# Response modes per (queue, category); "*" is the wildcard.
response_rules = sa.Table(
    "response_rules",
    metadata,
    sa.Column("queue", sa.String, primary_key=True),
    sa.Column("category", sa.String, primary_key=True),
    sa.Column("mode", sa.String, nullable=False),  # free | assisted | suggested | automatic
    sa.Column("threshold", sa.Float, nullable=False),
    sa.Column("review_share", sa.Float, nullable=False),
)

# An agent's own share of answers held for review (e.g. 1.0 while they learn).
review_agents = sa.Table(
    "review_agents",
    metadata,
    sa.Column("agent_id", sa.String, primary_key=True),
    sa.Column("share", sa.Float, nullable=False),
)

# Outgoing answers held for a supervisor, and the decision and checklist score on each.
review_items = sa.Table(
    "review_items",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("task_id", sa.String, nullable=False),
    sa.Column("agent_id", sa.String, nullable=True),  # NULL: an automatic answer
    sa.Column("mode", sa.String, nullable=False),
    sa.Column("answer_id", sa.String, nullable=True),
    sa.Column("text_body", sa.Text, nullable=False),
    sa.Column("html_body", sa.Text, nullable=False),
    sa.Column("queue", sa.String, nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("state", sa.String, nullable=False),  # held | approved | edited | rejected
    sa.Column("reviewer", sa.String, nullable=True),
    sa.Column("decided_at", Time, nullable=True),
    sa.Column("score", sa.Integer, nullable=True),
    sa.Column("max_score", sa.Integer, nullable=True),
    sa.Column("checklist", sa.JSON, nullable=False),  # {item: true | false}
    sa.Column("final_text", sa.Text, nullable=True),
    sa.Column("note", sa.Text, nullable=False),
    sa.Index(None, "state", "created_at"),
    sa.Index(None, "task_id"),
)

# --- codification, spam and collaboration (migration 0005) -------------------------------------

# A category and what it drives (queue, priority, skills, attributes of the tasks it is given).
categories = sa.Table(
    "categories",
    metadata,
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("queue", sa.String, nullable=True),
    sa.Column("priority", sa.Integer, nullable=True),
    sa.Column("skills", sa.JSON, nullable=False),  # {skill: level}
    sa.Column("attributes", sa.JSON, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
)

# Categorisation rules, evaluated in (position, id) order; the first match wins.
category_rules = sa.Table(
    "category_rules",
    metadata,
    sa.Column("id", LogId, primary_key=True, autoincrement=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("category", sa.String, nullable=False),
    sa.Column("field", sa.String, nullable=False),  # sender | recipient | ... | form:<name>
    sa.Column("pattern", sa.Text, nullable=False),
    sa.Column("match", sa.String, nullable=False),  # regex | keywords
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Index(None, "position", "id"),
)

# Labelled texts the classifier is trained on (corrections, completed tasks, imports).
category_examples = sa.Table(
    "category_examples",
    metadata,
    sa.Column("id", LogId, primary_key=True, autoincrement=True),
    sa.Column("task_id", sa.String, nullable=True),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("category", sa.String, nullable=False),
    sa.Column("source", sa.String, nullable=False),  # agent | disposition | import
    sa.Column("actor", sa.String, nullable=False),
    sa.Column("at", Time, nullable=False),
    sa.Index(None, "task_id"),
)

# Internal notes on a task (never sent to the customer).
task_notes = sa.Table(
    "task_notes",
    metadata,
    sa.Column("id", LogId, primary_key=True, autoincrement=True),
    sa.Column("task_id", sa.String, nullable=False),
    sa.Column("author", sa.String, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("at", Time, nullable=False),
    sa.Index(None, "task_id", "id"),
)

# Experts consulted by e-mail; the token in the subject threads the answer back.
consults = sa.Table(
    "consults",
    metadata,
    sa.Column("token", sa.String, primary_key=True),
    sa.Column("task_id", sa.String, nullable=False),
    sa.Column("agent_id", sa.String, nullable=False),
    sa.Column("expert", sa.String, nullable=False),
    sa.Column("message_id", sa.String, nullable=True),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("answered_at", Time, nullable=True),
    sa.Index(None, "task_id"),
    sa.Index(None, "message_id"),
)

# Tasks set aside until a time (deadline paused meanwhile); pending ones are re-armed at start.
reminders = sa.Table(
    "reminders",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("task_id", sa.String, nullable=False),
    sa.Column("agent_id", sa.String, nullable=False),
    sa.Column("due_at", Time, nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("state", sa.String, nullable=False),  # pending | done | superseded
    sa.Index(None, "state", "due_at"),
    sa.Index(None, "task_id"),
)

# --- the desk (migration 0006) -------------------------------------------------------------------

# People who sign in to the console: agents (the id of an agent) and supervisors. The password
# is stored as an argon2 hash only.
accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("role", sa.String, nullable=False),  # agent | supervisor
    sa.Column("name", sa.String, nullable=False),
    sa.Column("password_hash", sa.String, nullable=True),
    sa.Column("disabled", sa.Boolean, nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
)

# Secrets generated on first use and shared by every process on the database (the console's
# token key when no key file is configured).
secrets = sa.Table(
    "secrets",
    metadata,
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("value", sa.LargeBinary, nullable=False),
    sa.Column("created_at", Time, nullable=False),
)

# --- token revocation (migration 0010) -----------------------------------------------------------

# Tokens revoked one by one, by their `jti`; a row can go once `expires_at` is past.
revoked_tokens = sa.Table(
    "revoked_tokens",
    metadata,
    sa.Column("jti", sa.String, primary_key=True),
    sa.Column("expires_at", Time, nullable=False),
    sa.Column("revoked_at", Time, nullable=False),
    sa.Column("actor", sa.String, nullable=False),
)

# Every token of a subject issued before `not_before` is revoked (a disabled account, a new
# password, `switchboard token revoke --subject`).
revoked_subjects = sa.Table(
    "revoked_subjects",
    metadata,
    sa.Column("subject", sa.String, primary_key=True),
    sa.Column("not_before", Time, nullable=False),
    sa.Column("revoked_at", Time, nullable=False),
    sa.Column("actor", sa.String, nullable=False),
)

# --- webhooks (migration 0011) -------------------------------------------------------------------

# Other systems' subscriptions to the event logs: `kinds` a JSON list of event kinds ("*" all,
# "task.*" a family); `secret` signs each delivery (HMAC-SHA256). The cursors are the last id of
# each log (task_events, agent_events) already turned into deliveries for this subscription.
webhook_subscriptions = sa.Table(
    "webhook_subscriptions",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("url", sa.String, nullable=False),
    sa.Column("kinds", sa.JSON, nullable=False),
    sa.Column("secret", sa.String, nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("created_by", sa.String, nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False),
    sa.Column("task_cursor", LogId, nullable=False),
    sa.Column("agent_cursor", LogId, nullable=False),
)

# One event to one subscription: `event_id` ("task-<id>" | "agent-<id>") is the receiver's
# de-duplication key; `payload` the JSON body's object as first built. state: pending |
# delivered | dead.
webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", LogId, primary_key=True, autoincrement=True),
    sa.Column("subscription_id", sa.String, nullable=False),
    sa.Column("event_id", sa.String, nullable=False),
    sa.Column("kind", sa.String, nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("state", sa.String, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("next_attempt_at", Time, nullable=True),
    sa.Column("last_status", sa.Integer, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("delivered_at", Time, nullable=True),
    sa.UniqueConstraint("subscription_id", "event_id"),
    sa.Index(None, "state", "next_attempt_at"),
    sa.Index(None, "subscription_id", "state", "id"),
)

# --- the router's lease (migration 0015) ---------------------------------------------------------

# Which node routes on this database (storage/lease.py): the holder renews `expires_at` on the
# database's clock; every routing transaction checks `epoch`, which each claim raises by one.
router_leases = sa.Table(
    "router_leases",
    metadata,
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("epoch", sa.BigInteger, nullable=False),
    sa.Column("holder", sa.String, nullable=False),
    sa.Column("holder_watched", sa.Boolean, nullable=False),
    sa.Column("expires_at", Time, nullable=False),
    sa.Column("claimed_at", Time, nullable=False),
    sa.Column("renewed_at", Time, nullable=False),
)

# --- mail held by nodes that do not route (migration 0016) ---------------------------------------

# What a standby or edge node's SMTP accepted (committed before its 250) until the router takes
# it in (storage/held.py); deleted once stored as mail.
held_mail = sa.Table(
    "held_mail",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("received_at", Time, nullable=False),
    sa.Column("node", sa.String, nullable=False),
    sa.Column("queue", sa.String, nullable=False),
    sa.Column("envelope_from", sa.String, nullable=False),
    sa.Column("recipients", sa.JSON, nullable=False),
    sa.Column("verdict", sa.JSON, nullable=True),
    sa.Column("raw", sa.LargeBinary, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", Time, nullable=False, index=True),
    sa.Column("error", sa.Text, nullable=True),
)

# --- the nodes of a cluster (migration 0017) -------------------------------------------------------

# Where each node can be reached (storage/nodes.py): written by the node when it starts.
cluster_nodes = sa.Table(
    "cluster_nodes",
    metadata,
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("host", sa.String, nullable=False),
    sa.Column("endpoints", sa.JSON, nullable=False),
    sa.Column("started_at", Time, nullable=False),
)

# --- checkpoints of today's figures (migration 0019) ----------------------------------------------

# A fold's state saved by the process that routes (storage/report_checkpoints.py): one row per
# name ("today"), replaced at each save; `data` is JSON text of format `version`.
report_checkpoints = sa.Table(
    "report_checkpoints",
    metadata,
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("day_start", Time, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("saved_at", Time, nullable=False),
    sa.Column("data", sa.Text, nullable=False),
)
