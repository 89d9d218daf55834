"""`recog search`: one query image against a collection, its results as a table or as raw JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

from shared.client import ApiError, Client
from shared.failures import CommandFailed
from shared.tables import table


def collection_token(client: Client, name: str) -> str:
    """A token of the collection called `name` (its oldest: the one made with it)."""
    collection = client.collection(name)
    if collection is None:
        raise ApiError("NOT_FOUND", f"There is no collection {name!r}.", 404)
    tokens = client.objects("token", collection__uuid=collection["uuid"])
    if not tokens:
        raise ApiError("NOT_FOUND", f"The collection {name!r} has no token: create one to search it.", 404)
    return str(tokens[0]["token"])


def _corners(bbox: list[list[float]] | None) -> str:
    """The four corners (top-left, top-right, bottom-left, bottom-right) as fractions of the query's size."""
    return " ".join(f"{x:.2f},{y:.2f}" for x, y in bbox) if bbox else "-"


def render(answer: dict[str, Any]) -> str:
    results = answer["results"]
    if not results:
        return f"No match ({answer['search_time']} ms)."
    rows = [
        [r["item"].get("name", ""), f"{r['score']:.1f}", r["image"]["uuid"], _corners(r.get("bbox"))] for r in results
    ]
    return table(["item", "score", "image", "bbox (TL TR BL BR)"], rows, "<><<") + f"\n({answer['search_time']} ms)"


def run(client: Client, image: Path, *, token: str, collection: str, as_json: bool, out: TextIO = sys.stdout) -> int:
    """Searches with `token`, or with a token of the collection called `collection`."""
    try:
        data = image.read_bytes()
    except OSError as exc:
        raise CommandFailed(f"cannot read {image}: {exc.strerror}") from None
    answer = client.search(token or collection_token(client, collection), image, data)
    print(json.dumps(answer) if as_json else render(answer), file=out)
    return 0
