"""`switchboard token revoke --jti JTI | --subject ID` (parsed as `tokens revoke`): refuse console
and CTI tokens. The revocation is stored through `dispatcher.service.revocation`; servers on
this database read it within `REVOCATION_POLL_SECONDS` and close the sessions.
"""

from __future__ import annotations

from typing import Any

from dispatcher.domain.events import OPERATOR
from dispatcher.service.edges import EdgeCommandContext

# `switchboard token revoke ...` is parsed as `switchboard tokens revoke ...` (`token` itself
# is the console's command, whose `--agent` is required; the runtime's parser rewrites it).
REVOKE_COMMAND = "tokens"


def add_commands(sub: Any) -> None:
    """`tokens revoke`."""
    revoke = sub.add_parser(
        REVOKE_COMMAND, help="revoke console/CTI tokens (also `switchboard token revoke`)"
    ).add_subparsers(dest="action", required=True, metavar="ACTION")
    r = revoke.add_parser("revoke", help="refuse a token (by its jti) or every token of a "
                                         "subject issued until now; running servers close "
                                         "the sessions within a few seconds")
    which = r.add_mutually_exclusive_group(required=True)
    which.add_argument("--jti", help="the token's `jti` claim (tokens we issue have one)")
    which.add_argument("--subject", help="an agent's id, a supervisor's id or a PBX's name: "
                                         "every token issued to it before now")


async def cmd_tokens_revoke(context: EdgeCommandContext, args: Any) -> int:
    """Store the revocation; servers on this database read it within their poll interval."""
    if args.jti:
        await context.revocations.revoke_token(args.jti, OPERATOR)
        print(f"revoked the token {args.jti.strip()}")
    else:
        await context.revocations.revoke_subject(args.subject or "", OPERATOR)
        print(f"revoked every token of {args.subject.strip()} issued until now")
    return 0


COMMANDS = {(REVOKE_COMMAND, "revoke"): cmd_tokens_revoke}
