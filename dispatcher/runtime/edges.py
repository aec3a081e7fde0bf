"""Edges are loaded, not imported: the runtime finds them by the entry-point group
`switchboard.edges`, so `dispatcher` never imports `channels` or `agent_console`. The contract
(EdgeSpec, EdgeContext) is in `dispatcher.service.edges`."""

from __future__ import annotations

from importlib.metadata import entry_points

from dispatcher.service.edges import EdgeSpec

ENTRY_POINT_GROUP = "switchboard.edges"


def discover() -> dict[str, EdgeSpec]:
    """Every installed edge, by name."""
    specs: dict[str, EdgeSpec] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        spec = ep.load()
        if not isinstance(spec, EdgeSpec):
            raise TypeError(f"entry point {ep.name} ({ep.value}) is not an EdgeSpec")
        specs[spec.name] = spec
    return specs
