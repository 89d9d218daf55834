"""`recog collections` and `recog tokens`: what the management API holds, as tables."""

from __future__ import annotations

import sys
from typing import TextIO

from shared.client import ApiError, Client
from shared.tables import table


def collections(client: Client, out: TextIO = sys.stdout) -> int:
    """Each collection with its number of items (one call per collection)."""
    rows = [
        [c["name"], c["uuid"], str(client.count("item", collection__uuid=c["uuid"])), c["created_at"]]
        for c in client.objects("collection")
    ]
    print(table(["name", "uuid", "items", "created"], rows, "<<><") if rows else "No collections.", file=out)
    return 0


def tokens(client: Client, collection: str, out: TextIO = sys.stdout) -> int:
    """Every token, or those of the collection called `collection`."""
    names = {c["uuid"]: c["name"] for c in client.objects("collection")}
    filters: dict[str, str] = {}
    if collection:
        found = [uuid for uuid, name in names.items() if name == collection]
        if not found:
            raise ApiError("NOT_FOUND", f"There is no collection {collection!r}.", 404)
        filters["collection__uuid"] = found[0]
    rows = [
        [
            t["token"],
            names.get(t["collection"].rstrip("/").rsplit("/", 1)[-1], "?"),
            "-" if t.get("rate_limit") is None else f"{t['rate_limit']}/s",
            t.get("created_at", ""),
        ]
        for t in client.objects("token", **filters)
    ]
    print(table(["token", "collection", "rate limit", "created"], rows, "<<><") if rows else "No tokens.", file=out)
    return 0
