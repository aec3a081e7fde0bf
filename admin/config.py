"""The admin edge's settings (`[admin]` in switchboard.toml, `SWITCHBOARD_ADMIN_*`).

Its commands come from the installed edge whatever `enabled` says (as the console's `token`):
`enabled = false` takes away only its pages, /healthz and /report. /report accepts the
console's tokens (the runtime verifies them with `[console]`'s keys), so it has no key settings.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AdminSettings:
    enabled: bool = True
