"""The `recog` command: run as a real process, since it configures logging for the whole process."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.cli import build_parser, logging_config
from shared.config import markdown_table
from shared.redaction import redacted_url

ROOT = Path(__file__).resolve().parent.parent


def recog(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RECOG_") and k != "REDIS_URL"}
    command = [sys.executable, "-m", "shared.cli", *args]
    return subprocess.run(
        command, env={**clean, **env}, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )


def test_config_prints_the_table() -> None:
    result = recog("config")
    assert result.returncode == 0, result.stderr
    assert result.stdout == markdown_table() + "\n"


@pytest.mark.parametrize(
    ("name", "value"), [("RECOG_SHARDS", "eight"), ("RECOG_LOG_LEVEL", "LOUD"), ("RECOG_WORKER_SHARDS", "9")]
)
def test_a_bad_setting_exits_2_with_one_line(name: str, value: str) -> None:
    result = recog("config", **{name: value})
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("recog: configuration error: ") and name in result.stderr
    assert result.stderr.count("\n") == 1


def test_output_cut_short_by_its_reader_ends_quietly() -> None:
    # `true` reads nothing and exits at once, long before Python has started: the write always fails.
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RECOG_") and k != "REDIS_URL"}
    shell = f"{sys.executable} -m shared.cli config | true; echo ${{PIPESTATUS[0]}}"
    result = subprocess.run(
        ["bash", "-c", shell], env=clean, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert (result.stdout, result.stderr) == ("141\n", "")


def test_apikey_create_prints_a_new_key(redis_url: str) -> None:
    first, second = recog("apikey", "create", REDIS_URL=redis_url), recog("apikey", "create", REDIS_URL=redis_url)
    assert first.stderr == f"recog: using Redis {redacted_url(redis_url)} (REDIS_URL)\n"  # no password shown
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert first.stdout.strip() and first.stdout.count("\n") == 1
    assert first.stdout != second.stdout


def test_defaults_match_the_docs() -> None:
    serve = build_parser().parse_args(["serve"])
    assert (serve.host, serve.port, serve.processes) == ("0.0.0.0", 8080, 1)
    up = build_parser().parse_args(["up"])
    assert (up.host, up.port, up.workers) == ("127.0.0.1", 8080, 2)


@pytest.mark.parametrize("argv", [["up", "--workers", "0"], ["serve", "--processes", "0"], ["apikey"], []])
def test_bad_arguments_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)
    assert exited.value.code == 2


def test_log_lines_name_the_process_and_logger() -> None:
    config = logging_config("INFO", "worker")
    record = logging.LogRecord("recog.worker", logging.INFO, __file__, 1, "loaded %d images", (3,), None)
    line = logging.Formatter(config["formatters"]["recog"]["format"]).format(record)
    assert line.endswith(f" worker[{os.getpid()}] recog.worker INFO: loaded 3 images")
