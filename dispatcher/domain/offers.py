"""Offers: a time-limited lease of one task to one agent, fenced by its id.

The server-side timer lives in the service layer; the domain only records when the lease ends.
"""

from __future__ import annotations

from dataclasses import dataclass

from .tasks import Channel


@dataclass(frozen=True, slots=True)
class Offer:
    id: str
    task_id: str
    agent_id: str
    channel: Channel
    queue: str
    created_at: float
    expires_at: float
