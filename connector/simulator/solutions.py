"""The solutions (apps) the simulator can serve, and how each one "labels" an item.

Labels are derived from the input alone (a CRC of the text or URL), never from a random source,
so a test can compute the expected `output_data` of any item it uploaded.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from connector.toloka.models import FieldSpec

_BAD_WORD = re.compile(r"\b(?:bad|hate|spam|scam|kill|stupid|idiot)\b", re.IGNORECASE)


def _confidence(digest: int) -> float:
    """A stable pseudo-confidence in [0.5, 1.0) from a CRC."""
    return 0.5 + (digest % 5000) / 10_000


def text_moderation_output(input_data: Mapping[str, Any]) -> dict[str, Any]:
    """BAD when the text contains one of a few rude words (case-insensitive), else OK."""
    text = str(input_data.get("text", ""))
    label = "BAD" if _BAD_WORD.search(text) else "OK"
    return {"result": [label], "confidence": _confidence(zlib.crc32(text.encode()))}


def image_moderation_output(input_data: Mapping[str, Any]) -> dict[str, Any]:
    """BAD for one URL in ten (by CRC), else OK."""
    digest = zlib.crc32(str(input_data.get("image_url", "")).encode())
    return {"result": ["BAD" if digest % 10 == 0 else "OK"], "confidence": _confidence(digest)}


@dataclass(frozen=True, slots=True)
class Solution:
    app_id: str
    name: str
    input_spec: dict[str, FieldSpec]
    output_spec: dict[str, FieldSpec]
    label: Callable[[Mapping[str, Any]], dict[str, Any]]
    seed_input: Callable[[int], dict[str, Any]]
    """Input data of the n-th item the admin API seeds."""

    def app_json(self) -> dict[str, Any]:
        """`GET /apps/{app_id}` as the API shapes it (AppResult)."""
        return {
            "id": self.app_id,
            "name": self.name,
            "description": f"{self.name} (simulated)",
            "default_item_price": 0.0,
            "param_spec": {},
            "input_spec": {name: spec.model_dump() for name, spec in self.input_spec.items()},
            "output_spec": {name: spec.model_dump() for name, spec in self.output_spec.items()},
            "examples": {},
        }


_OUTPUT_SPEC = {
    "result": FieldSpec(type="array_string", required=True),
    "confidence": FieldSpec(type="float", required=True),
}

TEXT_MODERATION = Solution(
    app_id="sim-text-moderation",
    name="Text moderation",
    input_spec={
        "id": FieldSpec(type="string", required=False),
        "text": FieldSpec(type="string", required=True),
    },
    output_spec=_OUTPUT_SPEC,
    label=text_moderation_output,
    seed_input=lambda n: {"id": f"seed-{n}", "text": f"Seeded item number {n}."},
)

IMAGE_MODERATION = Solution(
    app_id="sim-image-moderation",
    name="Image moderation",
    input_spec={
        "id": FieldSpec(type="string", required=False),
        "image_url": FieldSpec(type="url", required=True),
    },
    output_spec=_OUTPUT_SPEC,
    label=image_moderation_output,
    seed_input=lambda n: {"id": f"seed-{n}", "image_url": f"https://example.com/seed/{n}.jpg"},
)

SOLUTIONS = {"text-moderation": TEXT_MODERATION, "image-moderation": IMAGE_MODERATION}
"""By the name the CLI option `--solution` takes."""
