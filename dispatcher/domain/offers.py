"""Offers: a time-limited lease of one task to one agent, fenced by its id.

The server-side timer lives in the service layer; the domain only records when the lease ends.
"""

from __future__ import annotations

from dataclasses import dataclass

from .tasks import Channel


# Not frozen: a frozen dataclass costs ~1 us more to build, and the router builds one per
# decision. Treated as immutable all the same: nothing assigns to a field after creation.
@dataclass(slots=True)
class Offer:
    id: str
    task_id: str
    agent_id: str
    channel: Channel
    queue: str
    created_at: float
    expires_at: float
