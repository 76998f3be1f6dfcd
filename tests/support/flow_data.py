"""Any flow's data as the engine sees it: a JSON object written and read back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Notes:
    values: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return dict(self.values)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Notes:
        return cls(dict(raw))
