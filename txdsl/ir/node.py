"""The base of every IR node: frozen, strict, compared and hashed by content.

Source spans ride along on nodes for error reporting but are excluded from
dumps, equality and the hash: the same spec spelled differently (other
whitespace, comments, expressions) gives an equal IR with the same hash.
"""

from __future__ import annotations

import hashlib
import json

from pydantic import BaseModel, ConfigDict


class Node(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    def canonical_json(self) -> str:
        """Sorted-key, whitespace-free JSON of the node (spans excluded)."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    def content_hash(self) -> str:
        """A stable SHA-256 of the node's content, as hex."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.model_dump() == other.model_dump()  # type: ignore[union-attr]

    def __hash__(self) -> int:
        return hash(self.canonical_json())
