"""The registry's state and rules, without HTTP: schemas by id, subjects by version, the
compatibility level (global and per subject).

As in the registry: one id per distinct (type, schema text, references), shared by every subject
that registers it; registering what a subject already holds returns its id and adds no version;
a version that breaks the subject's compatibility level is refused (409). Errors carry the
registry's `error_code`s (40401 subject, 40402 version, 40403 schema not found, 42201 invalid
schema, 42202 invalid version, 42203 invalid compatibility level).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from connector.devtools.registry.compatibility import (
    LEVELS,
    InvalidSchemaError,
    compatible,
    parse,
)

DEFAULT_LEVEL = "BACKWARD"


class RegistryError(Exception):
    def __init__(self, status: int, error_code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message


@dataclass(frozen=True)
class StoredSchema:
    id: int
    schema_type: str
    text: str
    references: tuple[tuple[str, str, int], ...]
    parsed: Any = field(compare=False, repr=False)

    def body(self) -> dict[str, Any]:
        """The schema as the API shows it (AVRO, the default type, is left out)."""
        shown: dict[str, Any] = {"schema": self.text}
        if self.schema_type != "AVRO":
            shown["schemaType"] = self.schema_type
        if self.references:
            shown["references"] = [
                {"name": n, "subject": s, "version": v} for n, s, v in self.references
            ]
        return shown


@dataclass
class RegistryState:
    lock: threading.Lock = field(default_factory=threading.Lock)
    schemas: dict[int, StoredSchema] = field(default_factory=dict)
    subjects: dict[str, list[int]] = field(default_factory=dict)
    """Subject → schema ids, version 1 first."""
    level: str = DEFAULT_LEVEL
    subject_levels: dict[str, str] = field(default_factory=dict)

    # --- schemas -----------------------------------------------------------------------------

    def _schema_of(
        self, payload: dict[str, Any]
    ) -> tuple[str, str, tuple[tuple[str, str, int], ...]]:
        text = payload.get("schema")
        if not isinstance(text, str):
            raise RegistryError(422, 42201, "Invalid schema: no schema text")
        schema_type = str(payload.get("schemaType") or "AVRO").upper()
        references = tuple(
            (str(r["name"]), str(r["subject"]), int(r["version"]))
            for r in payload.get("references") or ()
        )
        return schema_type, text, references

    def _existing(self, key: tuple[str, str, tuple[tuple[str, str, int], ...]]) -> int | None:
        for schema in self.schemas.values():
            if (schema.schema_type, schema.text, schema.references) == key:
                return schema.id
        return None

    def schema(self, schema_id: int) -> StoredSchema:
        with self.lock:
            found = self.schemas.get(schema_id)
        if found is None:
            raise RegistryError(404, 40403, "Schema not found")
        return found

    # --- subjects ----------------------------------------------------------------------------

    def subject_names(self) -> list[str]:
        with self.lock:
            return sorted(s for s, ids in self.subjects.items() if ids)

    def versions(self, subject: str) -> list[int]:
        with self.lock:
            return list(range(1, len(self._ids(subject)) + 1))

    def _ids(self, subject: str) -> list[int]:
        ids = self.subjects.get(subject)
        if not ids:
            raise RegistryError(404, 40401, f"Subject '{subject}' not found.")
        return ids

    def version(self, subject: str, version: str) -> dict[str, Any]:
        with self.lock:
            ids = self._ids(subject)
            number = self._version_number(ids, version)
            stored = self.schemas[ids[number - 1]]
        return {"subject": subject, "version": number, "id": stored.id, **stored.body()}

    @staticmethod
    def _version_number(ids: list[int], version: str) -> int:
        if version in {"latest", "-1"}:
            return len(ids)
        if not version.isdigit() or int(version) < 1:
            raise RegistryError(422, 42202, f"Invalid version {version}")
        if int(version) > len(ids):
            raise RegistryError(404, 40402, f"Version {version} not found.")
        return int(version)

    def register(self, subject: str, payload: dict[str, Any]) -> int:
        key = self._schema_of(payload)
        try:
            parsed = parse(key[0], key[1])
        except InvalidSchemaError as exc:
            raise RegistryError(422, 42201, f"Invalid schema: {exc}") from exc
        with self.lock:
            ids = self.subjects.setdefault(subject, [])
            known = self._existing(key)
            if known is not None and known in ids:
                return known
            previous = [
                self.schemas[i].parsed for i in ids if self.schemas[i].schema_type == key[0]
            ]
            if not compatible(self._level(subject), key[0], parsed, previous):
                raise RegistryError(
                    409, 409, "Schema being registered is incompatible with an earlier schema "
                    f"for subject \"{subject}\" ({self._level(subject)})",
                )  # fmt: skip
            if known is None:
                known = max(self.schemas, default=0) + 1
                self.schemas[known] = StoredSchema(known, *key, parsed=parsed)
            ids.append(known)
            return known

    def lookup(self, subject: str, payload: dict[str, Any]) -> dict[str, Any]:
        key = self._schema_of(payload)
        with self.lock:
            ids = self._ids(subject)
            known = self._existing(key)
            if known is None or known not in ids:
                raise RegistryError(404, 40403, "Schema not found")
            stored = self.schemas[known]
        return {"subject": subject, "version": ids.index(known) + 1, "id": known, **stored.body()}

    def test_compatibility(
        self, subject: str, version: str | None, payload: dict[str, Any]
    ) -> bool:
        schema_type, text, _ = self._schema_of(payload)
        try:
            parsed = parse(schema_type, text)
        except InvalidSchemaError as exc:
            raise RegistryError(422, 42201, f"Invalid schema: {exc}") from exc
        with self.lock:
            ids = self.subjects.get(subject) or []
            if version is not None:
                ids = [self._ids(subject)[self._version_number(self._ids(subject), version) - 1]]
            previous = [
                self.schemas[i].parsed for i in ids if self.schemas[i].schema_type == schema_type
            ]
            level = self._level(subject)
        if version is not None and level.endswith("_TRANSITIVE"):
            level = level.removesuffix("_TRANSITIVE")
        return compatible(level, schema_type, parsed, previous)

    def delete(self, subject: str) -> list[int]:
        with self.lock:
            ids = self._ids(subject)
            del self.subjects[subject]
            return list(range(1, len(ids) + 1))

    # --- compatibility levels ----------------------------------------------------------------

    def _level(self, subject: str) -> str:
        return self.subject_levels.get(subject, self.level)

    def get_level(self, subject: str | None) -> str:
        with self.lock:
            if subject is None:
                return self.level
            if subject not in self.subject_levels:
                raise RegistryError(
                    404,
                    40408,
                    f"Subject '{subject}' does not have subject-level compatibility configured",
                )
            return self.subject_levels[subject]

    def set_level(self, subject: str | None, level: Any) -> str:
        if not isinstance(level, str) or level.upper() not in LEVELS:
            raise RegistryError(422, 42203, f"Invalid compatibility level {level!r}")
        with self.lock:
            if subject is None:
                self.level = level.upper()
            else:
                self.subject_levels[subject] = level.upper()
        return level.upper()
