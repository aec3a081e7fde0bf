"""The console as an edge: its EdgeSpec, the `token` command and the keys it loads."""

from __future__ import annotations

import argparse
import os
import stat
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from agent_console.auth import KeyProblem, TokenRefused, load_keys, verifier_for
from agent_console.config import ConsoleSettings
from agent_console.plugin import EDGE, Console


def parse(argv):
    parser = argparse.ArgumentParser()
    EDGE.commands(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_the_edge_spec():
    assert EDGE.name == "console" and EDGE.settings is ConsoleSettings
    assert ConsoleSettings().enabled and ConsoleSettings().max_frame_bytes > 0


def test_token_command_prints_a_token_the_server_accepts(tmp_path, capsys):
    secret = tmp_path / "secret"
    secret.write_text("k" * 40)
    settings = ConsoleSettings(jwt_secret_file=str(secret))
    args = parse(["token", "--agent", "a7", "--role", "supervisor", "--ttl", "60"])
    assert args.edge_command(args, settings) == 0
    token = capsys.readouterr().out.strip()
    claims = verifier_for(settings, load_keys(settings)).verify(token)
    assert (claims.sub, claims.role) == ("a7", "supervisor")
    assert claims.exp - claims.iat == 60


def test_generated_secret_is_private_and_stable(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = ConsoleSettings()
    first = load_keys(settings)
    assert first.generated == tmp_path / settings.generated_secret_file
    assert stat.S_IMODE(os.stat(first.generated).st_mode) == 0o600
    assert load_keys(settings).verify == first.verify
    with pytest.raises(KeyProblem):
        load_keys(replace(settings, generated_secret_file=""))


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
    args = parse(["token", "--agent", "a1"])
    assert args.edge_command(args, settings) == 0
    token = capsys.readouterr().out.strip()
    verifier = verifier_for(settings, load_keys(settings))
    assert verifier.verify(token).sub == "a1"
    # Algorithm confusion: an HS256 token keyed with the public key is refused.
    import jwt

    with pytest.raises(TokenRefused):
        verifier.verify(jwt.encode({"sub": "a1"}, "x" * 40, algorithm="HS256"))
    verify_only = replace(settings, jwt_private_key_file="")
    args = parse(["token", "--agent", "a1"])
    assert args.edge_command(args, verify_only) == 2


def test_console_builds_without_starting(tmp_path):
    class Ctx:
        reactor = sessions = roster = assignment = site_root = history = None
        queries = type("Q", (), {"router": None})()
    console = Console(Ctx(), ConsoleSettings())
    assert console.stop() is None
