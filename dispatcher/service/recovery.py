"""Recovery: the router rebuilt at start, and what a crash left behind settled before routing
resumes.

Sits in `dispatcher.service`; the composition root (runtime/app.py) calls `Recovery.restore`
once at start, before any edge starts and before `/healthz` answers. It promises:

- the router is rebuilt from the stored state and every timer re-armed (`Assignment.restore`:
  offers in flight at the crash count as expired and their tasks go back to the head of their
  queue, to be offered again; escalation steps, wrap-ups, preferences and the agents' restart
  grace run on again);
- a call of the SIP edge lived in the process that took its INVITE (its transaction, and its
  dialog as a record-routing proxy): after a crash nobody holds it. A caller who was still
  waiting (queued, offered, or assigned but not yet answered) is abandoned with reason
  `call_lost`; a call answered by then goes on phone to phone (the media never passed through
  us), but its end can no longer reach us (its BYE through us now gets 481), so it is logged
  as ended (`call.ended` by `call_lost`, with no talk time: the call may go on) and its agent
  starts wrap-up, which ends by its timer or on the desk; the agent is not held "on a call"
  for ever by a call whose end we will never see;
- when each lost call was lost is taken as the process's last sign of life, the newest event of
  the logs (never before the task's own last change, never after now): the time a caller
  waited counts the time the process was up, not the time it was down. It is a lower bound: a
  process that crashed after a quiet spell lost its calls later than its last event says;
- calls a PBX reported (CTI) are left as they are: the PBX still holds the caller, and reports
  the call's end itself;
- all the lost calls are settled in one batch (one commit) before the returned Deferred fires;
- the reactor is never blocked for long, whatever the number of open tasks: each loop over them
  runs in slices with the reactor's turn between two (service/slices.py), the lease renewed
  meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from twisted.internet.defer import Deferred, ensureDeferred

from dispatcher.domain.errors import DomainError
from dispatcher.domain.routing import Outcome
from dispatcher.domain.tasks import Channel, Task, TaskState

from .assignment import Assignment
from .calls import ANSWERED_AT, CALL_LOST, SIP_SOURCE, Calls
from .ports import State, Store
from .slices import slices

log = logging.getLogger(__name__)

ABANDON = "abandon"  # the caller was still waiting: abandoned
END = "end"  # the call was answered: its end logged, the agent to wrap-up
WAITING = (TaskState.QUEUED, TaskState.OFFERED)


@dataclass(frozen=True, slots=True)
class LostCall:
    task_id: str
    fate: str  # ABANDON or END
    at: float  # when it was lost


def lost_calls(tasks: Iterable[Task], last_alive: float | None, now: float) -> list[LostCall]:
    """The SIP calls among `tasks` (the stored open tasks, as they were at the crash) that
    died with the process, what becomes of each and when it was lost. Pure."""
    lost = []
    for task in tasks:
        if task.channel is not Channel.PHONE or task.attributes.get("source") != SIP_SOURCE:
            continue
        if task.state in WAITING:
            fate = ABANDON
        elif task.state is TaskState.ASSIGNED:
            fate = END if ANSWERED_AT in task.attributes else ABANDON
        else:
            continue  # wrap-up: the call is over already; its timer ends it
        changed = task.updated_at if task.updated_at is not None else task.created_at
        seen = changed if last_alive is None else max(last_alive, changed)
        lost.append(LostCall(task.id, fate, min(now, max(seen, task.created_at))))
    return lost


class Recovery:
    def __init__(self, assignment: Assignment, calls: Calls, log_store: Store) -> None:
        self.assignment = assignment
        self.calls = calls
        self.log_store = log_store

    def restore(self, state: State) -> Deferred[list[LostCall]]:
        """Rebuild the router from `state`, re-arm the timers, settle the lost calls (committed
        when this fires, with the calls settled)."""
        return ensureDeferred(self._restore(state))

    async def _restore(self, state: State) -> list[LostCall]:
        now = self.assignment.now()
        # Read before the restore logs anything: its own events happen now.
        last_alive = await self.log_store.last_event_at()
        lost: list[LostCall] = []
        async for chunk in slices(self.assignment.clock, state.open_tasks):
            lost += lost_calls(chunk, last_alive, now)
        await self.assignment.restore(state)
        out = Outcome()
        for call in lost:
            task = self.assignment.router.tasks.get(call.task_id)
            if task is None:
                continue
            try:
                if call.fate == END and task.state is TaskState.ASSIGNED:
                    more = self.calls.end_outcome(task, CALL_LOST, call.at, now, seen=False)
                else:
                    more = self.calls.abandon_outcome(task, CALL_LOST, call.at)
            except DomainError as exc:  # not a state a call can be lost in: left as it is
                log.error("call task %s not settled after the restart: %s", task.id, exc)
                continue
            out.merge(more)
        if lost:
            log.warning("%d SIP calls lost with the previous process: %d callers abandoned "
                        "(call_lost), %d answered calls ended", len(lost),
                        sum(c.fate == ABANDON for c in lost), sum(c.fate == END for c in lost))
        await self.assignment.apply(out)
        return lost
