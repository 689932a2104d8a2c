"""Keys Sync documents that batchkit does not model yet: a warning (``unmodelled-field``), never a refusal.

A key the wire contract has never heard of is an ``unknown-field`` error with a "did you mean" hint, because
it is almost always a typo. The keys below are different: Sync's docs (or Sync's own clients) name them, so
a line may carry them on purpose. batchkit cannot check their values, so the validator warns and passes the
line on unchanged; the JSON Schemas list them as properties of any value. batchkit itself never writes them.

Each key is given by its path inside the payload, with where it is documented.
"""

from __future__ import annotations

from typing import Final

__all__ = ["RETIRED_OPTIONS", "UNMODELLED", "unmodelled_note"]

#: Path inside the payload → where Sync documents it.
UNMODELLED: Final[dict[tuple[str, ...], str]] = {
    ("projectId",): (
        "the project a generation belongs to, a UUID; Sync's sync-api agent skill lists it among the newer "
        "request fields, and Sync's MCP server sends it with its generate requests"
    ),
    ("options", "active_speaker_detection", "bounding_boxes_url"): (
        "the URL of a JSON file of per-frame bounding boxes, in the generate request schema Comfy Router "
        "relays for synclabs/sync-3"
    ),
}

#: Options only the older v2 docs had (docs.sync.so post-generate and post-cost examples). Neither the SDK nor
#: the newer docs have them, so they stay ``unknown-field`` errors, with a message that says so.
RETIRED_OPTIONS: Final = frozenset(
    {"pads", "speedup", "output_format", "fps", "output_resolution", "active_speaker"}
)


def unmodelled_note(loc: tuple[int | str, ...]) -> str | None:
    """Where Sync documents the key at ``loc`` (a location inside a batch line), or None when it does not."""
    if len(loc) < 2 or loc[0] != "payload":
        return None
    return UNMODELLED.get(tuple(str(part) for part in loc[1:]))
