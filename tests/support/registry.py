"""An in-memory stand-in for the schema registry, for unit tests of the serde logic only
(integration tests use the real registry the stack starts)."""

from __future__ import annotations

from shared.registry import SchemaNotFoundError


class InMemoryRegistry:
    """Ids are global and stable per schema text, as in a Confluent-compatible registry."""

    def __init__(self, first_id: int = 100) -> None:
        self.by_id: dict[int, str] = {}
        self.subjects: dict[str, list[int]] = {}
        self._next = first_id
        self.lookups = 0

    def register(self, subject: str, schema: str) -> int:
        known = {text: i for i, text in self.by_id.items()}
        schema_id = known.get(schema)
        if schema_id is None:
            schema_id, self._next = self._next, self._next + 1
            self.by_id[schema_id] = schema
        self.subjects.setdefault(subject, []).append(schema_id)
        return schema_id

    def schema_by_id(self, schema_id: int) -> str:
        self.lookups += 1
        try:
            return self.by_id[schema_id]
        except KeyError:
            raise SchemaNotFoundError(f"GET /schemas/ids/{schema_id}: 404") from None
