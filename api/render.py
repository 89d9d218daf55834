"""Turns a worker's hits into the contract's v1 and v2 result objects.

Workers know only ids; item names, links and custom data live in the catalogue, read here in one
pipelined round trip per search.
"""

from __future__ import annotations

from typing import Any

from api.forms import SearchForm
from shared.codec import Hit

# Item fields that appear in results only when the item has them.
_OPTIONAL = ("url", "content")


def thumb_template(base: str) -> str:
    """`{0}`, `{1}`, `{2}`: collection, item and image uuids (the v2 `image_template`)."""
    return f"{base}/files/{{0}}/{{1}}/{{2}}/thumb_120.jpg"


def _item(item: dict[str, Any], form: SearchForm, base: str) -> dict[str, Any]:
    out: dict[str, Any] = {"uuid": item["uuid"], "name": item.get("name", "")}
    for field in _OPTIONAL:
        if item.get(field):
            out[field] = item[field]
    for field, embed in (("custom", form.embed_custom), ("tracking", form.embed_tracking)):
        if item.get(field):
            out[field] = item[field] if embed else f"{base}/api/v0/item/{item['uuid']}/{field}"
    out["trackable"] = bool(item.get("trackable", False))
    return out


def _bbox(hit: Hit, form: SearchForm) -> dict[str, Any]:
    return {"bbox": [[round(x, 5), round(y, 5)] for x, y in hit.corners]} if form.bboxes else {}


def results_v1(
    hits: list[Hit], items: dict[str, dict[str, Any]], collection: str, form: SearchForm, base: str
) -> list[dict[str, Any]]:
    template = thumb_template(base)
    return [
        {
            "item": _item(items[hit.item], form, base),
            "image": {"uuid": hit.image, "thumb_120": template.format(collection, hit.item, hit.image)},
            "score": round(hit.score, 2),
            **_bbox(hit, form),
        }
        for hit in hits
        if hit.item in items
    ]


def results_v2(
    hits: list[Hit], items: dict[str, dict[str, Any]], images: dict[str, list[str]], form: SearchForm, base: str
) -> list[dict[str, Any]]:
    return [
        {
            "item": {**_item(items[hit.item], form, base), "images": images.get(hit.item, [hit.image])},
            "image": hit.image,
            "score": round(hit.score, 2),
            **_bbox(hit, form),
        }
        for hit in hits
        if hit.item in items
    ]
