from pathlib import Path

import pytest

from shared.config import VARIABLES, ConfigError, Settings, markdown_table, parse_shard_list
from shared.redaction import redacted_url


def test_defaults_are_sensible() -> None:
    settings = Settings.from_env({})
    assert settings.shards == 8
    assert settings.worker_shards is None  # automatic
    assert settings.replicas == 2
    assert settings.min_side == 100
    assert settings.redis_url == "redis://127.0.0.1:6379/0"


def test_values_are_read_from_the_environment() -> None:
    settings = Settings.from_env({"RECOG_SHARDS": "4", "RECOG_WORKER_SHARDS": "0,2-3", "RECOG_DEADLINE_MS": "900"})
    assert settings.worker_shards == frozenset({0, 2, 3})
    assert settings.deadline_ms == 900


@pytest.mark.parametrize(
    "env",
    [
        {"RECOG_SHARDS": "many"},
        {"RECOG_SHARDS": "0"},
        {"RECOG_WORKER_SHARDS": "9", "RECOG_SHARDS": "4"},
        {"RECOG_WORKER_SHARDS": "x"},
        {"RECOG_TOKEN_CACHE_SECONDS": "-1"},
        {"RECOG_LOG_LEVEL": "LOUD"},
    ],
)
def test_bad_values_fail_loudly(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        Settings.from_env(env)


def test_shard_list_all_and_auto() -> None:
    assert parse_shard_list("all", 3) == frozenset({0, 1, 2})
    assert parse_shard_list("auto", 3) is None


def test_readme_table_lists_every_variable() -> None:
    table = markdown_table()
    assert all(f"`{v.name}`" in table for v in VARIABLES)


def test_readme_shows_the_current_table() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert markdown_table() in readme, "regenerate the README's table with `recog config`"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:s3cret@redis:6379/0", "redis://:***@redis:6379/0"),
        ("rediss://user:p%40ss@redis:6380/2?ssl_cert_reqs=none", "rediss://user:***@redis:6380/2?ssl_cert_reqs=none"),
        ("redis://redis:6379/0?password=s3cret&db=1", "redis://redis:6379/0?password=***&db=1"),
        ("unix:///run/redis.sock?password=s3cret", "unix:///run/redis.sock?password=***"),
        ("redis://user@redis/0", "redis://user@redis/0"),
    ],
)
def test_redacted_url_hides_the_password_only(url: str, shown: str) -> None:
    assert redacted_url(url) == shown
