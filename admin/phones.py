"""`switchboard phones set | list | remove`: agents' phone accounts.

Sits in the admin edge; each `cmd_*` is given the command's context (`EdgeCommandContext`). A
SIP password is turned into digest HA1 hashes (MD5 and SHA-256, for the realm the phone edge
announces) and never stored; it can come from a file (`--password-file`) so it stays
out of the shell history. The rules (a known agent, a SIP user and an extension nobody else
has) and the audit are `dispatcher.service.configuration.Configuration`'s; a running server
applies the change within a few seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

from dispatcher.domain.errors import InvalidValue
from dispatcher.service.calls import DEFAULT_REALM, make_account
from dispatcher.service.edges import EdgeCommandContext

from .parse import NOT_LIVE, nothing_yet, operator


def add_commands(sub) -> None:
    phones = sub.add_parser("phones", help="agents' phones: SIP credentials and PBX extensions")
    actions = phones.add_subparsers(dest="action", required=True)
    p = actions.add_parser("set", help="give an agent a SIP phone and/or a PBX extension")
    p.add_argument("agent", help="the agent's id")
    p.add_argument("--user", help="SIP user name the phone registers with")
    secret = p.add_mutually_exclusive_group()
    secret.add_argument("--password", help="SIP password (prefer --password-file)")
    secret.add_argument("--password-file", help="file holding the SIP password")
    p.add_argument("--realm", default=DEFAULT_REALM,
                   help=f"digest realm; must match [phone] realm (default {DEFAULT_REALM})")
    p.add_argument("--extension", help="the agent's extension on a PBX (CTI)")
    p = actions.add_parser("list", help="every agent's phone and extension")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p = actions.add_parser("remove", help="remove an agent's phone account and registration")
    p.add_argument("agent", help="the agent's id")


def _password(args) -> str | None:
    if args.password_file:
        try:
            return Path(args.password_file).read_text().rstrip("\r\n")
        except OSError as exc:
            raise InvalidValue(f"cannot read {args.password_file}: {exc.strerror}") from None
    return args.password


async def cmd_phones_set(context: EdgeCommandContext, args) -> int:
    account = make_account(args.agent, args.user, _password(args), args.realm, args.extension)
    await context.configuration.put_phone(account, **operator())
    print(f"phone of {account.agent_id} saved; {NOT_LIVE}")
    return 0


async def cmd_phones_list(context: EdgeCommandContext, args) -> int:
    accounts = await context.configuration.phones()
    bindings = {b.agent_id: b for b in await context.records.registrations()}
    rows = [{"agent": a.agent_id, "sip_user": a.sip_user, "realm": a.realm,
             "extension": a.extension,
             "contact": bindings[a.agent_id].contact if a.agent_id in bindings else None}
            for a in accounts]
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
            nothing_yet("phones", "give an agent one with `switchboard phones set AGENT`")
    else:
        for r in rows:
            print(f"{r['agent']:<16} sip={r['sip_user'] or '-':<16} ext={r['extension'] or '-':<8}"
                  f" registered={r['contact'] or 'no'}")
    return 0


async def cmd_phones_remove(context: EdgeCommandContext, args) -> int:
    await context.configuration.remove_phone(args.agent, **operator())
    print(f"phone of {args.agent} removed; {NOT_LIVE}")
    return 0


COMMANDS = {
    ("phones", "set"): cmd_phones_set,
    ("phones", "list"): cmd_phones_list,
    ("phones", "remove"): cmd_phones_remove,
}
