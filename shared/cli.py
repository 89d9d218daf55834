"""The `recog` command: one entry point for every process the service runs.

    recog up [--host H] [--port P] [--workers N]     the whole stack on this machine (see launcher)
    recog serve [--host H] [--port P] [--processes N] the API (uvicorn)
    recog worker                                      one recognition worker
    recog apikey create|list|revoke KEY               management API keys (in Redis)
    recog config                                      the table of environment variables
    recog status [--watch [SECONDS]] [--json]         shard queues, owners and worker heartbeats
    recog migrate                                     move features kept in Redis to the blob store
    recog sweep [--grace SECONDS]                     remove blob-store files no image owns
    recog import DIR|MANIFEST.csv --collection NAME   images into a collection, resumable
    recog search IMAGE --collection NAME | --token T  one search, as a table or JSON
    recog collections / recog tokens [--collection]   what the service holds

Settings are read once from the environment; a bad value ends the command with exit code 2 and a
one-line message. A command that needs Redis or the API finds them in REDIS_URL / RECOG_API_URL or
else in the record of the `recog up` running on RECOG_DATA_DIR (`shared.stackfile`), and says on
stderr which it uses. Modules behind each command are imported only when it runs, so `recog config`
works without the heavy dependencies and a worker does not load the web stack.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging.config
import os
import shutil
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared import stackfile
from shared.config import ConfigError, Settings, markdown_table
from shared.failures import CommandFailed

if TYPE_CHECKING:
    from shared.client import Client


def logging_config(level: str, role: str) -> dict[str, Any]:
    """Every process logs to stderr as `time role[pid] logger LEVEL: message`.

    A dict rather than `basicConfig` so uvicorn can apply the same one in each process it spawns
    for `--processes N` (spawned processes do not inherit the parent's handlers).
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"recog": {"format": f"%(asctime)s {role}[%(process)d] %(name)s %(levelname)s: %(message)s"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "recog", "stream": "ext://sys.stderr"}},
        "root": {"level": level, "handlers": ["stderr"]},
        # httpx logs every request at INFO (the launcher's probes too); faiss logs its CPU probing.
        "loggers": {"httpx": {"level": "WARNING"}, "faiss.loader": {"level": "WARNING"}},
    }


def _up(args: argparse.Namespace, settings: Settings) -> int:
    from shared import launcher

    options = launcher.StackOptions(host=args.host, port=args.port, workers=args.workers)
    return launcher.run(settings, options)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    if args.processes > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # prometheus-client's multiprocess mode: every process writes its metrics under this
        # folder and /metrics, whichever process answers, sums them. Read at import, so set first.
        folder = settings.data_dir / "prometheus"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)

    # Each uvicorn process builds its app from the environment: hand it the stack this command found.
    os.environ.update(REDIS_URL=settings.redis_url, RECOG_SHARDS=str(settings.shards))

    from api.slow_clients import HeaderDeadlineProtocol

    uvicorn.run(
        "api.app:create_app",  # a string, so each of `--processes` builds its own app from the environment
        factory=True,
        http=functools.partial(HeaderDeadlineProtocol, header_timeout=settings.header_timeout_seconds),  # type: ignore[arg-type]
        limit_concurrency=settings.max_connections,
        host=args.host,
        port=args.port,
        workers=args.processes,
        log_config=logging_config(settings.log_level, "api"),
        access_log=settings.log_level == "DEBUG",  # one line per search is noise at normal levels
        timeout_graceful_shutdown=settings.deadline_ms // 1000 + 5,  # searches in flight end by their deadline
    )
    return 0


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    if args.healthcheck:
        import socket

        import redis

        from workers.heartbeat import healthy

        with redis.Redis.from_url(settings.redis_url, socket_timeout=5) as connection:
            return 0 if healthy(connection, socket.gethostname()) else 1
    from workers.worker import main as worker_main

    return worker_main(settings)


def _apikey_create(args: argparse.Namespace, settings: Settings) -> int:
    from shared import keyadmin

    return keyadmin.create(settings.redis_url, args.label)


def _apikey_list(args: argparse.Namespace, settings: Settings) -> int:
    from shared import keyadmin

    return keyadmin.list_keys(settings.redis_url)


def _apikey_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from shared import keyadmin

    return keyadmin.revoke(settings.redis_url, args.key)


def _client(args: argparse.Namespace, settings: Settings, connections: int = 4) -> Client:
    from shared.client import Client, api_key

    return Client(settings.api_url, api_key(args.api_key, settings), connections=connections)


def _import(args: argparse.Namespace, settings: Settings) -> int:
    from shared import importer

    with _client(args, settings, connections=args.jobs) as client:
        return importer.run(client, args.source, args.collection, args.jobs)


def _search(args: argparse.Namespace, settings: Settings) -> int:
    from shared import searching

    with _client(args, settings) as client:
        return searching.run(client, args.image, token=args.token, collection=args.collection, as_json=args.json)


def _collections(args: argparse.Namespace, settings: Settings) -> int:
    from shared import listing

    with _client(args, settings) as client:
        return listing.collections(client)


def _tokens(args: argparse.Namespace, settings: Settings) -> int:
    from shared import listing

    with _client(args, settings) as client:
        return listing.tokens(client, args.collection)


def _config(args: argparse.Namespace, settings: Settings) -> int:
    print(markdown_table())
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    from shared import status

    return status.run(settings, watch=args.watch, as_json=args.json)


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    import redis
    from tqdm import tqdm

    from shared import migration
    from shared.blobs import LocalBlobStore

    with redis.Redis.from_url(settings.redis_url) as connection:
        total = migration.waiting(connection)
        with tqdm(total=total, unit="image", desc="moving features", disable=not total) as bar:
            moved = migration.migrate(connection, LocalBlobStore(settings.data_dir / "blobs"), bar.update)
    print(
        f"moved the features of {moved.images} image(s) of {moved.collections} collection(s) "
        f"to {settings.data_dir / 'blobs'} ({moved.bytes / 1e6:.1f} MB); {moved.unreadable} unreadable"
    )
    return 0


def _sweep(args: argparse.Namespace, settings: Settings) -> int:
    import redis
    from tqdm import tqdm

    from shared.blobs import LocalBlobStore
    from shared.sweep import sweep

    with redis.Redis.from_url(settings.redis_url) as connection, tqdm(unit="image", desc="checking") as bar:
        swept = sweep(connection, LocalBlobStore(settings.data_dir / "blobs"), args.grace, bar.update)
    print(f"removed {swept.removed} of {swept.images} image folder(s) that no image in the catalogue owns")
    return 0


Command = Callable[[argparse.Namespace, Settings], int]


@dataclasses.dataclass(frozen=True)
class Uses:
    """What a command talks to. A server (`recog serve`, `recog worker`) falls back to the default
    Redis when nothing names one: a server on a fresh Redis is normal, a client on one a mistake."""

    redis: bool = False
    api: bool = False
    server: bool = False


SERVER = Uses(redis=True, server=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recog", description="Self-hosted image recognition service.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str, run: Command, summary: str, role: str, sub: Any = commands, *, uses: Uses = Uses()
    ) -> argparse.ArgumentParser:
        command: argparse.ArgumentParser = sub.add_parser(name, help=summary, description=summary)
        command.set_defaults(run=run, role=role, uses=uses)
        return command

    def client(name: str, run: Command, summary: str) -> argparse.ArgumentParser:
        command = add(name, run, summary, name, uses=Uses(api=True))
        command.add_argument("--api-key", default="", help="management API key (default: see RECOG_API_KEY)")
        return command

    up = add("up", _up, "Run Redis, the API and workers on this machine until Ctrl-C.", "launcher")
    up.add_argument("--host", default="127.0.0.1", help="API address to listen on (default: %(default)s)")
    up.add_argument("--port", type=int, default=8080, help="API port (default: %(default)s)")
    up.add_argument("--workers", type=_positive, default=2, help="worker processes (default: %(default)s)")

    serve = add("serve", _serve, "Run the HTTP API.", "api", uses=SERVER)
    serve.add_argument("--host", default="0.0.0.0", help="address to listen on (default: %(default)s)")
    serve.add_argument("--port", type=int, default=8080, help="port (default: %(default)s)")
    serve.add_argument("--processes", type=_positive, default=1, help="uvicorn worker processes (default: %(default)s)")

    worker = add("worker", _worker, "Run one recognition worker (serves RECOG_WORKER_SHARDS).", "worker", uses=SERVER)
    worker.add_argument(
        "--healthcheck",
        action="store_true",
        help="exit 0 if a worker on this host beats and serves all its shards, else 1",
    )

    apikey = commands.add_parser("apikey", help="Manage management API keys.")
    apikey_commands = apikey.add_subparsers(dest="action", required=True, metavar="ACTION")
    redis = Uses(redis=True)
    create = add(
        "create", _apikey_create, "Create a management API key and print it.", "apikey", apikey_commands, uses=redis
    )
    create.add_argument("--label", default="", help="a note shown by `recog apikey list` (who or what uses the key)")
    add(
        "list",
        _apikey_list,
        "List API keys: prefix, creation time, label (never whole keys).",
        "apikey",
        apikey_commands,
        uses=redis,
    )
    revoke = add(
        "revoke",
        _apikey_revoke,
        "Revoke an API key; the API refuses it at once.",
        "apikey",
        apikey_commands,
        uses=redis,
    )
    revoke.add_argument("key", help="the whole key, or the prefix `recog apikey list` shows")

    add("config", _config, "Print the table of environment variables (Markdown).", "config")

    status = add(
        "status",
        _status,
        "Show each shard's queue and live workers, and every worker's heartbeat.",
        "status",
        uses=Uses(redis=True),
    )
    status.add_argument(
        "--watch",
        nargs="?",
        const=2.0,
        type=_seconds,
        metavar="SECONDS",
        help="redraw every SECONDS (default 2) until Ctrl-C",
    )
    status.add_argument(
        "--json", action="store_true", help="print JSON for scripts (one document per line with --watch)"
    )

    add(
        "migrate",
        _migrate,
        "Move reference features kept in Redis (older versions) to the blob store.",
        "migrate",
        uses=Uses(redis=True),
    )
    sweep = add(
        "sweep", _sweep, "Remove blob-store files that no image in the catalogue owns.", "sweep", uses=Uses(redis=True)
    )
    sweep.add_argument(
        "--grace",
        type=_seconds,
        default=3600.0,
        metavar="SECONDS",
        help="leave folders written to in the last SECONDS alone: uploads in progress (default: %(default)s)",
    )

    imports = client("import", _import, "Import a folder of images or a CSV manifest into a collection (resumable).")
    imports.add_argument(
        "source", type=Path, metavar="DIR|MANIFEST.csv", help="images, or a CSV: name,images[,url,custom]"
    )
    imports.add_argument("--collection", required=True, help="collection name (created if missing)")
    imports.add_argument("--jobs", type=_positive, default=4, help="uploads in parallel (default: %(default)s)")

    search = client("search", _search, "Search one image and print the results.")
    search.add_argument("image", type=Path, help="the query image (JPEG or PNG)")
    which = search.add_mutually_exclusive_group(required=True)
    which.add_argument("--collection", default="", help="search this collection (with its first token)")
    which.add_argument("--token", default="", help="search with this collection token")
    search.add_argument("--json", action="store_true", help="print the API's JSON answer as it is")

    client("collections", _collections, "List collections with their item counts.")
    tokens = client("tokens", _tokens, "List tokens, of every collection or of one.")
    tokens.add_argument("--collection", default="", help="only this collection's tokens")
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {text}")
    return value


def _aim(settings: Settings, uses: Uses) -> Settings:
    """`settings` pointed at the stack the command should use (REDIS_URL, RECOG_API_URL, or the
    running `recog up`'s record), which it names on stderr; servers name it only when found
    by the record, since their logs say the rest."""
    target = stackfile.resolve(
        os.environ, settings.data_dir, need_redis=uses.redis, need_api=uses.api, server=uses.server
    )
    if target.from_record or not uses.server:
        print(target.describe(redis=uses.redis, api=uses.api), file=sys.stderr, flush=True)
    return dataclasses.replace(
        settings, redis_url=target.redis_url, api_url=target.api_url, shards=target.shards or settings.shards
    )


def _run(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"recog: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.config.dictConfig(logging_config(settings.log_level, args.role))
    run: Command = args.run
    uses: Uses = args.uses
    try:
        if uses.redis or uses.api:
            settings = _aim(settings, uses)
        return run(args, settings)
    except CommandFailed as exc:
        print(f"recog: {exc}", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command; its exit code. Output cut short by its reader (`recog config | head -1`)
    ends the command quietly with the status of a process killed by SIGPIPE (141), not a traceback."""
    try:
        return _run(argv)
    except BrokenPipeError:
        # Python would flush stdout again at exit and fail again: point it at /dev/null first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except KeyboardInterrupt:
        return 128 + signal.SIGINT


if __name__ == "__main__":
    sys.exit(main())
