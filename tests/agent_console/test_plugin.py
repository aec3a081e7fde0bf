"""The console as an edge: its EdgeSpec, the `token` command (the accounts' rule: an existing
agent, an enabled supervisor account) and the keys it loads (a key file, or the secret kept in
the database)."""

from __future__ import annotations

import argparse
from dataclasses import replace

import pytest
from argon2 import PasswordHasher
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import Clock
from twisted.web.resource import Resource

from agent_console.auth import KeyProblem, TokenRefused, load_keys, verifier_for
from agent_console.config import ConsoleSettings
from agent_console.plugin import EDGE, Console
from dispatcher.domain.agents import Agent
from dispatcher.domain.routing import Router
from dispatcher.service.accounts import Accounts
from dispatcher.service.assignment import Assignment
from dispatcher.service.configuration import Configuration
from dispatcher.service.edges import EdgeCommandContext, EdgeContext
from dispatcher.service.intake import Intake
from dispatcher.service.queries import Queries
from dispatcher.service.sessions import Sessions
from dispatcher.storage.accounts import MemoryAccounts
from dispatcher.storage.memory import MemoryStore
from tests.dispatcher.storage.test_store_contract import fired

STORED = b"d" * 64  # the secret the runtime keeps in the database


def parse(argv):
    parser = argparse.ArgumentParser()
    EDGE.commands(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def context(supervisors=(), disabled=()) -> EdgeCommandContext:
    """What the CLI hands the command: accounts on memory stores (agents a1 and a7)."""
    store = MemoryStore()
    for agent_id in ("a1", "a7"):
        fired(store.put_agent(Agent(agent_id)))
    accounts = Accounts(MemoryAccounts(), store, Clock(),
                        hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    for sub in supervisors:
        fired(accounts.set(sub, "supervisor"))
    for sub in disabled:
        fired(accounts.disable(sub))
    return EdgeCommandContext(None, accounts, STORED)


def command(argv, settings, ctx=None) -> int:
    args = parse(argv)
    return fired(ensureDeferred(args.edge_command(args, settings, ctx or context())))


def test_the_edge_spec():
    assert EDGE.name == "console" and EDGE.settings is ConsoleSettings
    assert ConsoleSettings().enabled and ConsoleSettings().max_frame_bytes > 0


def test_token_command_prints_a_token_the_server_accepts(tmp_path, capsys):
    secret = tmp_path / "secret"
    secret.write_text("k" * 40)
    settings = ConsoleSettings(jwt_secret_file=str(secret))
    argv = ["token", "--agent", "sue", "--role", "supervisor", "--ttl", "60"]
    assert command(argv, settings, context(supervisors=["sue"])) == 0
    token = capsys.readouterr().out.strip()
    claims = verifier_for(settings, load_keys(settings)).verify(token)
    assert (claims.sub, claims.role) == ("sue", "supervisor")
    assert claims.exp - claims.iat == 60


def test_token_command_signs_with_the_secret_kept_in_the_database(capsys):
    settings = ConsoleSettings()  # no secret file
    assert command(["token", "--agent", "a1"], settings) == 0
    token = capsys.readouterr().out.strip()
    assert verifier_for(settings, load_keys(settings, STORED)).verify(token).sub == "a1"
    with pytest.raises(KeyProblem, match="jwt_secret_file"):
        load_keys(settings)  # no file and no database secret: refused, never unsigned


@pytest.mark.parametrize("argv, ctx, why", [
    (["--agent", "nobody"], {}, "no such agent: nobody"),
    (["--agent", "boss", "--role", "supervisor"], {}, "no supervisor account boss"),
    (["--agent", "sue", "--role", "supervisor"], {"supervisors": ["sue"], "disabled": ["sue"]},
     "account sue is disabled"),
])
def test_token_command_refuses_who_may_not_hold_one(argv, ctx, why, capsys):
    assert command(["token", *argv], ConsoleSettings(), context(**ctx)) == 2
    out, err = capsys.readouterr()
    assert out == "" and why in err


def test_integration_tokens_need_no_account(capsys):
    assert command(["token", "--agent", "pbx1", "--role", "integration"], ConsoleSettings()) == 0
    assert capsys.readouterr().out.count(".") == 2  # a JWT


def test_short_secrets_and_unknown_algorithms_are_refused(tmp_path):
    short = tmp_path / "short"
    short.write_text("tiny")
    with pytest.raises(KeyProblem, match="at least"):
        load_keys(ConsoleSettings(jwt_secret_file=str(short)))
    with pytest.raises(KeyProblem, match="jwt_algorithm"):
        load_keys(ConsoleSettings(jwt_algorithm="none"))
    with pytest.raises(KeyProblem, match="cannot read"):
        load_keys(ConsoleSettings(jwt_secret_file=str(tmp_path / "absent")))


def test_rs256_verifies_with_the_public_key_and_pins_the_algorithm(tmp_path, capsys):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private, public = tmp_path / "key.pem", tmp_path / "pub.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    settings = ConsoleSettings(jwt_algorithm="RS256", jwt_public_key_file=str(public),
                               jwt_private_key_file=str(private))
    assert command(["token", "--agent", "a1"], settings) == 0
    token = capsys.readouterr().out.strip()
    verifier = verifier_for(settings, load_keys(settings))
    assert verifier.verify(token).sub == "a1"
    # Algorithm confusion: an HS256 token keyed with the public key is refused.
    import jwt

    with pytest.raises(TokenRefused):
        verifier.verify(jwt.encode({"sub": "a1"}, "x" * 40, algorithm="HS256"))
    verify_only = replace(settings, jwt_private_key_file="")
    assert command(["token", "--agent", "a1"], verify_only) == 2


def test_console_builds_without_starting(tmp_path):
    clock, store, router = Clock(), MemoryStore(), Router()
    assignment = Assignment(router, store, clock)
    console = Console(ConsoleSettings(), clock=clock, sessions=Sessions(assignment),
                      queries=Queries(router, store),
                      assignment=assignment, site_root=Resource())
    assert console.stop() is None


def test_the_edge_is_built_from_the_context_s_services_read_by_name():
    """`build` hands the console the services of the context it uses, as typed arguments;
    the optional ones it lacks leave their features out."""
    clock, store, router = Clock(), MemoryStore(), Router()
    assignment = Assignment(router, store, clock)
    accounts = Accounts(MemoryAccounts(), store, clock)
    context = EdgeContext(reactor=clock, intake=Intake(assignment, store, clock),
                          sessions=Sessions(assignment), queries=Queries(router, store),
                          configuration=Configuration(store, clock, assignment=assignment),
                          assignment=assignment,
                          site_root=Resource(), accounts=accounts, token_secret=STORED)
    console = EDGE.build(context, ConsoleSettings())
    assert console.accounts is accounts and console.token_secret == STORED
    assert console.sessions is context.sessions and console.site_root is context.site_root
    assert console.desks.reply_hook is None  # no mail service: replies are refused
