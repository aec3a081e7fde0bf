"""What the CTI still has to tell each PBX: the latest instruction (`offer`, `route`,
`cancel_route`) of each of an integration's calls that the PBX may not have acted on. Part of
the phone edge (cti.py keeps one `Instructions`); plain data, no I/O, no clock.

What it promises:
- `issued` keeps one frame per call, the latest: an `offer` is replaced by its `route` or its
  `cancel_route`, and so on. `settled` forgets a call the PBX has answered or ended.
- `due(integration)` lists that integration's frames in the order they were issued (a call's
  frame counts from its latest instruction), for the CTI to send after its `welcome`: what was
  issued while the link was down, or sent and perhaps never read, comes again. A PBX treats
  them as it treats the originals: they are idempotent (a route for a call already connected,
  a cancel for a call already back in its queue, an offer already ringing change nothing).
- Bounded: at most `limit` calls per integration; past it the oldest instruction is dropped and
  `issued` returns it, for the CTI to log. (A dropped `route` is caught by the route timeout.)
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

# Below the frames a link may have pending (cti.MAX_PENDING_FRAMES): a replay never closes it.
DEFAULT_LIMIT = 500


class Instructions:
    """The calls' latest instructions, per integration, in the order they were issued."""

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        if limit < 1:
            raise ValueError("limit: at least 1")
        self.limit = limit
        self._by_integration: dict[str, OrderedDict[str, dict[str, Any]]] = {}
        self._integration: dict[str, str] = {}  # task id -> its integration

    def issued(self, integration: str, task_id: str, frame: dict[str, Any]
               ) -> dict[str, Any] | None:
        """`frame` is now the call's instruction; the frame dropped to keep the bound, if
        any."""
        calls = self._by_integration.setdefault(integration, OrderedDict())
        calls.pop(task_id, None)
        calls[task_id] = frame
        self._integration[task_id] = integration
        if len(calls) <= self.limit:
            return None
        dropped_id, dropped = calls.popitem(last=False)
        self._integration.pop(dropped_id, None)
        return dropped

    def settled(self, task_id: str, integration: str | None = None) -> None:
        """The PBX has acted on the call (answered, ended): nothing to send again. With
        `integration`, only if the call is that integration's."""
        if integration is not None and self._integration.get(task_id) != integration:
            return
        integration = self._integration.pop(task_id, None)
        calls = self._by_integration.get(integration or "")
        if calls is None:
            return
        calls.pop(task_id, None)
        if not calls:
            del self._by_integration[integration]  # type: ignore[arg-type]

    def latest(self, task_id: str) -> dict[str, Any] | None:
        calls = self._by_integration.get(self._integration.get(task_id, ""))
        return None if calls is None else calls.get(task_id)

    def due(self, integration: str) -> list[dict[str, Any]]:
        return list(self._by_integration.get(integration, {}).values())

    def __len__(self) -> int:
        return len(self._integration)
