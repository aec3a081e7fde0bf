"""`switchboard accounts set | list | disable | remove`: who signs in to the console.

Sits in the admin edge; each `cmd_*` is given the command's context (`EdgeCommandContext`)
and works through the `Accounts` service (which hashes the password with argon2 and audits the
change in the agent log, actor `operator`). A password comes from a file (`--password-file`)
or standard input (`--password-stdin`), never from the command line, so it stays out of the
shell history and the process list; neither it nor its hash is ever printed or logged. A
running server sees a change at the next sign-in or connection (accounts are read each time).
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from dispatcher.domain.errors import InvalidValue
from dispatcher.service.accounts import ROLES
from dispatcher.service.edges import EdgeCommandContext


def add_commands(sub) -> None:
    accounts = sub.add_parser(
        "accounts", help="who signs in to the console: agents and supervisors, with passwords")
    actions = accounts.add_subparsers(dest="action", required=True)
    p = actions.add_parser("set", help="create or update an account (and enable it)")
    p.add_argument("id", help="the agent's id (role agent) or the supervisor's sign-in id")
    p.add_argument("--role", choices=ROLES, required=True,
                   help="agent (the id must be an existing agent) or supervisor")
    p.add_argument("--name", help="the name shown on the desk (default: the agent's name, "
                                  "or the current one)")
    secret = p.add_mutually_exclusive_group()
    secret.add_argument("--password-file",
                        help="file holding the password (its last line break is dropped)")
    secret.add_argument("--password-stdin", action="store_true",
                        help="read the password from standard input")
    p = actions.add_parser("list", help="every account, without passwords")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p = actions.add_parser("disable",
                           help="refuse the account's sign-in and tokens from now on")
    p.add_argument("id", help="the account's id")
    p = actions.add_parser("remove", help="delete an account (a supervisor's tokens are then "
                                          "refused; to stop an agent's, disable instead)")
    p.add_argument("id", help="the account's id")


def _password(args) -> str | None:
    if args.password_file:
        try:
            text = Path(args.password_file).read_text()
        except OSError as exc:
            raise InvalidValue(f"cannot read {args.password_file}: {exc.strerror}") from None
    elif args.password_stdin:
        text = sys.stdin.read()
    else:
        return None
    return text.removesuffix("\n").removesuffix("\r")


def when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


async def cmd_accounts_set(context: EdgeCommandContext, args) -> int:
    password = _password(args)
    account = await context.accounts.set(args.id, args.role, args.name, password)
    said = "password set" if password is not None else (
        "password kept" if account.password_hash else "no password: tokens only")
    print(f"account {account.id} ({account.role}) saved, {said}")
    return 0


async def cmd_accounts_list(context: EdgeCommandContext, args) -> int:
    rows = [{"id": a.id, "role": a.role, "name": a.name, "password": a.password_hash is not None,
             "disabled": a.disabled, "created_at": when(a.created_at),
             "updated_at": when(a.updated_at)}
            for a in await context.accounts.list()]
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print("no accounts yet (make one with `switchboard accounts set ID --role R "
              "--password-file F`)")
    else:
        for r in rows:
            print(f"{r['id']:<16} {r['role']:<10} {r['name'][:24]:<24} "
                  f"password={'yes' if r['password'] else 'no':<3} "
                  f"{'disabled' if r['disabled'] else 'enabled'}")
    return 0


async def cmd_accounts_disable(context: EdgeCommandContext, args) -> int:
    account = await context.accounts.disable(args.id)
    print(f"account {account.id} ({account.role}) disabled")
    return 0


async def cmd_accounts_remove(context: EdgeCommandContext, args) -> int:
    await context.accounts.remove(args.id)
    print(f"account {args.id} removed")
    return 0


COMMANDS = {
    ("accounts", "set"): cmd_accounts_set,
    ("accounts", "list"): cmd_accounts_list,
    ("accounts", "disable"): cmd_accounts_disable,
    ("accounts", "remove"): cmd_accounts_remove,
}
