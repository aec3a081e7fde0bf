"""Configuration: defaults < TOML file < SWITCHBOARD_* environment (and *_FILE secrets); every
problem reported at once in one ConfigError."""

from __future__ import annotations

import pytest

from dispatcher.runtime.config import Config, ConfigError, load


@pytest.fixture(autouse=True)
def no_local_file(tmp_path, monkeypatch):
    """Run where no ./switchboard.toml is lying around."""
    monkeypatch.chdir(tmp_path)


def write(tmp_path, text: str):
    path = tmp_path / "switchboard.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults():
    config = load(env={})
    assert config == Config()
    assert config.database.url == "sqlite:///switchboard.db"
    assert (config.server.host, config.server.http_port) == ("127.0.0.1", 8080)
    assert (config.log.level, config.log.format) == ("INFO", "text")
    assert (config.cluster.node, config.cluster.lease_seconds) == ("", 10.0)


def test_the_toml_file_overrides_the_defaults(tmp_path):
    path = write(tmp_path, """
[database]
url = "postgresql://db.example/switchboard"

[server]
http_port = 9000

[log]
format = "json"
""")
    config = load(path, env={})
    assert config.database.url == "postgresql://db.example/switchboard"
    assert config.server.http_port == 9000
    assert config.server.host == "127.0.0.1"  # not given: default
    assert config.log.format == "json"


def test_the_local_file_and_switchboard_config_are_found(tmp_path):
    write(tmp_path, "[server]\nhttp_port = 9001\n")
    assert load(env={}).server.http_port == 9001
    other = tmp_path / "other.toml"
    other.write_text("[server]\nhttp_port = 9002\n", encoding="utf-8")
    assert load(env={"SWITCHBOARD_CONFIG": str(other)}).server.http_port == 9002


def test_the_environment_overrides_the_toml_file(tmp_path):
    path = write(tmp_path, """
[database]
url = "sqlite:///from-file.db"
[server]
http_port = 9000
""")
    config = load(path, env={
        "SWITCHBOARD_DATABASE_URL": "sqlite:///from-env.db",
        "SWITCHBOARD_SERVER_HTTP_PORT": "9100",
        "SWITCHBOARD_LOG_LEVEL": "debug",
    })
    assert config.database.url == "sqlite:///from-env.db"
    assert config.server.http_port == 9100
    assert config.log.level == "debug"


def test_a_secret_may_come_from_a_file(tmp_path):
    secret = tmp_path / "db_url"
    secret.write_text("postgresql://app:s3cret@db/switchboard\n", encoding="utf-8")
    port = tmp_path / "port"
    port.write_text("9300", encoding="utf-8")
    path = write(tmp_path, '[database]\nurl = "sqlite:///from-file.db"\n')

    config = load(path, env={"SWITCHBOARD_DATABASE_URL_FILE": str(secret),
                             "SWITCHBOARD_SERVER_HTTP_PORT_FILE": str(port)})

    assert config.database.url == "postgresql://app:s3cret@db/switchboard"  # newline stripped
    assert config.server.http_port == 9300  # converted like any other value


def test_an_unreadable_secret_file_is_reported(tmp_path):
    with pytest.raises(ConfigError) as err:
        load(env={"SWITCHBOARD_DATABASE_URL_FILE": str(tmp_path / "missing")})
    assert any("SWITCHBOARD_DATABASE_URL_FILE" in p for p in err.value.problems)


def test_every_problem_is_reported_at_once(tmp_path):
    path = write(tmp_path, """
[datbase]
url = "sqlite:///typo.db"

[server]
http_port = "eighty"
hostname = "0.0.0.0"

[log]
level = "LOUD"
""")
    with pytest.raises(ConfigError) as err:
        load(path, env={"SWITCHBOARD_CLUSTER_LEASE_SECONDS": "soon"})
    problems = err.value.problems
    text = str(err.value)
    expected = [
        "[datbase]",  # unknown section
        "hostname",  # unknown key
        "[server] http_port",  # not an integer
        "[log] level",  # not a level
        "SWITCHBOARD_CLUSTER_LEASE_SECONDS",  # not a number, from the environment
    ]
    for fragment in expected:
        assert sum(fragment in p for p in problems) == 1, (fragment, problems)
        assert fragment in text
    assert len(problems) == len(expected), problems
    assert "unknown section" in text and "unknown key" in text


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"SWITCHBOARD_SERVER_HTTP_PORT": "8o80"}, "SWITCHBOARD_SERVER_HTTP_PORT"),
        ({"SWITCHBOARD_SERVER_HTTP_PORT": "70000"}, "http_port"),
        ({"SWITCHBOARD_LOG_FORMAT": "xml"}, "[log] format"),
        ({"SWITCHBOARD_CLUSTER_LEASE_SECONDS": "0.5"}, "lease_seconds"),
        ({"SWITCHBOARD_CLUSTER_LEASE_SECONDS": "nan"}, "SWITCHBOARD_CLUSTER_LEASE_SECONDS"),
        ({"SWITCHBOARD_CLUSTER_LEASE_SECONDS": "inf"}, "SWITCHBOARD_CLUSTER_LEASE_SECONDS"),
    ],
)
def test_bad_values_from_the_environment(env, fragment):
    with pytest.raises(ConfigError) as err:
        load(env=env)
    assert any(fragment in p for p in err.value.problems), err.value.problems


def test_a_file_that_is_not_toml_is_reported(tmp_path):
    path = write(tmp_path, "[server\nhttp_port = 1\n")
    with pytest.raises(ConfigError) as err:
        load(path, env={"SWITCHBOARD_LOG_LEVEL": "LOUD"})
    assert any("not valid TOML" in p for p in err.value.problems)
    assert any("[log] level" in p for p in err.value.problems)


def test_a_missing_file_is_reported(tmp_path):
    with pytest.raises(ConfigError) as err:
        load(tmp_path / "nope.toml", env={})
    assert any("cannot read" in p for p in err.value.problems)


def test_webhooks_settings_are_read_and_checked(tmp_path):
    config = load(write(tmp_path, "[webhooks]\nmax_attempts = 3\ntimeout = 2.5\n"),
                  env={"SWITCHBOARD_WEBHOOKS_PER_SUBSCRIPTION": "4"})
    assert (config.webhooks.max_attempts, config.webhooks.timeout,
            config.webhooks.per_subscription, config.webhooks.poll_seconds) == (3, 2.5, 4, 1.0)
    with pytest.raises(ConfigError) as caught:
        load(env={"SWITCHBOARD_WEBHOOKS_MAX_ATTEMPTS": "0", "SWITCHBOARD_WEBHOOKS_TIMEOUT": "0",
                  "SWITCHBOARD_WEBHOOKS_KEEP_DAYS": "-1"})
    assert set(caught.value.problems) == {"[webhooks] max_attempts: must be >= 1",
                                          "[webhooks] timeout: must be > 0",
                                          "[webhooks] keep_days: must be > 0"}


def test_history_cache_size_is_a_setting_and_not_negative():
    config = load(env={"SWITCHBOARD_SERVER_HISTORY_CACHE_CUSTOMERS": "500"})
    assert config.server.history_cache_customers == 500
    assert Config().server.history_cache_customers == 10_000
    with pytest.raises(ConfigError) as err:
        load(env={"SWITCHBOARD_SERVER_HISTORY_CACHE_CUSTOMERS": "-1"})
    assert "history_cache_customers" in str(err.value)


def test_the_centre_s_blend_is_a_setting(tmp_path):
    path = write(tmp_path, '[routing]\ninterruptions = "email:email; phone:"\n')
    assert load(path, env={}).routing.interruptions == "email:email; phone:"
    with pytest.raises(ConfigError) as err:
        load(env={"SWITCHBOARD_ROUTING_INTERRUPTIONS": "email:fax"})
    assert "[routing] interruptions: channels are email, phone" in str(err.value)
