"""Accounts: the people who sign in to the console (agents and supervisors), and the rules of
their sign-in.

Sits in `dispatcher.service`; uses the `AccountStore` port, the `Store` (which agents exist) and
the clock. The console edge calls it for `POST /login` and at the WebSocket hello; the command
line for `switchboard accounts ...` and `switchboard token`. What it promises:
- an agent's account has the id of an existing agent (else `UnknownAgent`); a supervisor's
  account is a person with role supervisor; one account per id;
- a password is kept only as an argon2id hash (argon2-cffi's `PasswordHasher`); hashing and
  checking are deliberately slow and run off the reactor thread (`offload`), at most
  MAX_CONCURRENT_CHECKS at a time; a hash made with older parameters is replaced at the next
  sign-in that proves the password;
- `sign_in` refuses an unknown id and a wrong password alike (`SignInRefused`, one message),
  after a hash check in both cases, so they take about as long; a disabled account is told
  apart (`AccountDisabled`) only once its password was right;
- `admit` is the rule for a token at the console: a supervisor token needs an enabled
  supervisor account; an agent token is refused when the agent's account is disabled;
- disabling or removing an account, or giving it a new password, revokes every token issued to
  it before (`tokens.revoke_subject`, when the runtime gives a `RevocationStore`): open console
  sessions are closed and the old tokens refused, everywhere, within the poll interval;
- every change is audited in the agent log (`account.changed`, `account.removed`, with the
  actor), never with the password or its hash.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from twisted.internet.defer import Deferred, DeferredSemaphore, ensureDeferred, maybeDeferred

from dispatcher.domain import events as ev
from dispatcher.domain.errors import DomainError, InvalidValue, UnknownAgent

from . import tokens
from .ports import Account, AccountStore, Store

ROLES = (AGENT, SUPERVISOR) = ("agent", "supervisor")
INTEGRATION = "integration"  # tokens of PBXs: no account
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024  # hashing cost grows with the length: bounded
MAX_ID_CHARS = 200
MAX_CONCURRENT_CHECKS = 2  # argon2 takes 64 MiB and ~4 cores' worth per check
PASSWORD_SET, PASSWORD_KEPT, PASSWORD_NONE = "set", "kept", "none"  # account.changed data


class SignInRefused(DomainError):
    """Wrong id or wrong password: deliberately one error, one message."""

    code = "sign_in_refused"

    def __init__(self) -> None:
        super().__init__("wrong id or password")


class AccountDisabled(DomainError):
    code = "account_disabled"

    def __init__(self, account_id: str) -> None:
        super().__init__(f"account {account_id} is disabled")
        self.account_id = account_id


class UnknownAccount(DomainError):
    code = "unknown_account"

    def __init__(self, account_id: str, role: str = "") -> None:
        what = f"{role} account" if role else "account"
        super().__init__(f"no {what} {account_id}")
        self.account_id = account_id


def _inline(fn: Callable[..., Any], *args: Any) -> Deferred[Any]:
    return maybeDeferred(fn, *args)


class Accounts:
    def __init__(self, store: AccountStore, agents: Store, clock: Any,
                 offload: Callable[..., Deferred[Any]] | None = None,
                 hasher: PasswordHasher | None = None,
                 revocations: tokens.RevocationStore | None = None,
                 revoked: tokens.RevocationList | None = None) -> None:
        self.store = store
        # where revocations are kept (None: no revocation, e.g. unit tests without tokens)
        self.revocations = revocations
        self.revoked = revoked
        self.agents = agents
        self.clock = clock
        # `offload(fn, *args) -> Deferred`: run a hash off the reactor thread (the runtime
        # passes its thread pool); None: inline (unit tests, with a cheap `hasher`).
        self.offload = offload or _inline
        self.hasher = hasher or PasswordHasher()
        self._checks = DeferredSemaphore(MAX_CONCURRENT_CHECKS)
        # a hash of nothing, checked for unknown ids (while being made: its Deferred)
        self._decoy: str | Deferred[str] | None = None

    def now(self) -> float:
        return self.clock.seconds()

    # ------------------------------------------------------------------ administration

    def set(self, account_id: str, role: str, name: str | None = None,
            password: str | None = None, actor: str = ev.OPERATOR) -> Deferred[Account]:
        """Create or update an account (enabled: `set` re-enables a disabled one). `name`
        None keeps the current one (the agent's name for a new agent account); `password`
        None keeps the current hash (a new account without one signs in with tokens only)."""
        return ensureDeferred(self._set(account_id, role, name, password, actor))

    async def _set(self, account_id: str, role: str, name: str | None, password: str | None,
                   actor: str) -> Account:
        if role not in ROLES:
            raise InvalidValue(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        if not account_id or len(account_id) > MAX_ID_CHARS or account_id != account_id.strip():
            raise InvalidValue("an account id is 1-200 characters, without surrounding spaces")
        agent_name = None
        if role == AGENT:
            agent = next((a for a in await self.agents.list_agents() if a.id == account_id),
                         None)
            if agent is None:
                raise UnknownAgent(account_id)
            agent_name = agent.name
        if password is not None:
            check_password(password)
        old = await self.store.get_account(account_id)
        now = self.now()
        digest = old.password_hash if old is not None else None
        if password is not None:
            digest = await self._checks.run(self.offload, self.hasher.hash, password)
        account = Account(
            id=account_id, role=role,
            name=name if name is not None else (old.name if old is not None and old.name
                                                else agent_name or account_id),
            password_hash=digest, disabled=False,
            created_at=old.created_at if old is not None else now, updated_at=now)
        said = PASSWORD_SET if password is not None else (
            PASSWORD_KEPT if digest is not None else PASSWORD_NONE)
        await self.store.put_account(account, [self._event(account, actor, now, said)])
        if old is not None and password is not None:
            await self._revoke(account_id, now, actor)
        return account

    async def _revoke(self, account_id: str, now: float, actor: str) -> None:
        """Every token of this account issued before now is refused from now on."""
        if self.revocations is not None:
            await tokens.revoke_subject(self.revocations, account_id, now, actor, self.revoked)

    def disable(self, account_id: str, actor: str = ev.OPERATOR) -> Deferred[Account]:
        """Disable an account: its sign-in and its tokens are refused from now on."""
        return ensureDeferred(self._disable(account_id, actor))

    async def _disable(self, account_id: str, actor: str) -> Account:
        old = await self.store.get_account(account_id)
        if old is None:
            raise UnknownAccount(account_id)
        now = self.now()
        account = dataclasses.replace(old, disabled=True, updated_at=now)
        await self.store.put_account(account, [self._event(
            account, actor, now, PASSWORD_KEPT if old.password_hash else PASSWORD_NONE)])
        await self._revoke(account_id, now, actor)
        return account

    def remove(self, account_id: str, actor: str = ev.OPERATOR) -> Deferred[None]:
        return ensureDeferred(self._remove(account_id, actor))

    async def _remove(self, account_id: str, actor: str) -> None:
        old = await self.store.get_account(account_id)
        event = ev.Event(ev.ACCOUNT_REMOVED, self.now(), agent_id=account_id, actor=actor,
                         data={"role": old.role if old is not None else None})
        if old is None or not await self.store.remove_account(account_id, [event]):
            raise UnknownAccount(account_id)
        await self._revoke(account_id, event.at, actor)

    def list(self) -> Deferred[list[Account]]:
        return self.store.list_accounts()

    def get(self, account_id: str) -> Deferred[Account | None]:
        return self.store.get_account(account_id)

    @staticmethod
    def _event(account: Account, actor: str, now: float, password: str) -> ev.Event:
        return ev.Event(ev.ACCOUNT_CHANGED, now, agent_id=account.id, actor=actor,
                        data={"role": account.role, "name": account.name,
                              "disabled": account.disabled, "password": password})

    # ------------------------------------------------------------------ sign-in

    def sign_in(self, account_id: str, password: str) -> Deferred[Account]:
        """The account whose password this is: `SignInRefused` for an unknown id, an account
        without a password and a wrong password alike; `AccountDisabled` for a disabled
        account whose password was right."""
        return ensureDeferred(self._sign_in(account_id, password))

    async def _sign_in(self, account_id: str, password: str) -> Account:
        if not isinstance(password, str) or len(password) > MAX_PASSWORD_CHARS:
            raise SignInRefused()
        account = None
        if isinstance(account_id, str) and 0 < len(account_id) <= MAX_ID_CHARS:
            account = await self.store.get_account(account_id)
        digest = account.password_hash if account is not None else None
        if digest is None:  # check something all the same: about as slow as a wrong password
            await self._checks.run(self.offload, self._matches, await self._decoy_hash(),
                                   password)
            raise SignInRefused()
        if not await self._checks.run(self.offload, self._matches, digest, password):
            raise SignInRefused()
        if account.disabled:
            raise AccountDisabled(account.id)
        if self.hasher.check_needs_rehash(digest):
            fresh = await self._checks.run(self.offload, self.hasher.hash, password)
            await self.store.replace_hash(account.id, digest, fresh, self.now())
        return account

    def _matches(self, digest: str, password: str) -> bool:  # in a pool thread
        try:
            return self.hasher.verify(digest, password)
        except (VerificationError, InvalidHashError):
            return False

    async def _decoy_hash(self) -> str:
        """One hash of nothing, made once, under the same limit as every other hash (a burst
        of unknown ids at start-up makes one, not one each)."""
        if self._decoy is None:
            self._decoy = self._checks.run(self.offload, self.hasher.hash,
                                           secrets.token_urlsafe(16))
        if isinstance(self._decoy, str):
            return self._decoy
        waiting: Deferred[str] = Deferred()
        self._decoy.addBoth(self._share, waiting)
        return await waiting

    def _share(self, got: Any, waiting: Deferred[str]) -> Any:
        """Hand the decoy (or its failure) to one waiter; keep it once made, forget a failure
        so that the next sign-in tries again."""
        self._decoy = got if isinstance(got, str) else None
        waiting.callback(got)
        return got

    # ------------------------------------------------------------------ tokens

    def admit(self, sub: str, role: str) -> Deferred[Account | None]:
        """The rule for a token's holder at the console (after the token's signature and
        claims were checked): a supervisor needs an enabled supervisor account
        (`UnknownAccount`, `AccountDisabled`); an agent's account, if there is one, must be an
        enabled agent account; integrations have none. Fires with the account, or None."""
        return ensureDeferred(self._admit(sub, role))

    async def _admit(self, sub: str, role: str) -> Account | None:
        if role == INTEGRATION:
            return None
        account = await self.store.get_account(sub)
        if role == SUPERVISOR and (account is None or account.role != SUPERVISOR):
            raise UnknownAccount(sub, SUPERVISOR)
        if account is None:
            return None
        if account.role != role:
            raise UnknownAccount(sub, role)
        if account.disabled:
            raise AccountDisabled(sub)
        return account

    def check_issue(self, sub: str, role: str) -> Deferred[Account | None]:
        """Whether a token may be issued to `sub` with `role` (`switchboard token`): `admit`'s
        rule, and an agent token needs an existing agent (`UnknownAgent`)."""
        return ensureDeferred(self._check_issue(sub, role))

    async def _check_issue(self, sub: str, role: str) -> Account | None:
        if role == AGENT and not any(a.id == sub for a in await self.agents.list_agents()):
            raise UnknownAgent(sub)
        return await self._admit(sub, role)


def check_password(password: str) -> None:
    """A password the service accepts to hash (InvalidValue says why, never with it)."""
    if len(password) < MIN_PASSWORD_CHARS:
        raise InvalidValue(f"a password needs at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise InvalidValue(f"a password has at most {MAX_PASSWORD_CHARS} characters")
