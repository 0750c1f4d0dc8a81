"""A client for Confluent-compatible schema registries (Karapace in production, Apicurio's
ccompat API locally): register, look up by id, compatibility settings."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import backoff
import requests


class RegistryError(RuntimeError):
    """The registry refused or failed a request; the message carries its answer."""


class IncompatibleSchemaError(RegistryError):
    """The new schema breaks the subject's compatibility rule (HTTP 409)."""


class SchemaNotFoundError(RegistryError):
    """The registry answered 404: no such schema id, subject or version."""


CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


log = logging.getLogger(__name__)

#: the longest pause between two tries while the registry is unreachable
RETRY_CAP_S = 5.0


def _transient(exc: Exception) -> bool:
    return isinstance(exc, requests.ConnectionError | requests.Timeout)


class SchemaRegistryClient:
    """Thread-safe, caching client. Schemas by id are immutable, so they are cached forever.

    An unreachable registry (refused, reset, no answer within `timeout_s`) is retried with
    exponential backoff capped at `RETRY_CAP_S` for up to `wait_s` seconds, each retry
    logged; after that the `requests` error is raised. Answers (4xx/5xx) are never retried.
    `cancelled` (optional) is asked after each failed try: True gives up at once (a process
    stopping while it waits).
    """

    def __init__(
        self,
        url: str,
        timeout_s: float = 10.0,
        auth: tuple[str, str] | None = None,
        wait_s: float = 30.0,
        cancelled: Callable[[], bool] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._timeout = timeout_s
        self.wait_s = wait_s
        self._session = requests.Session()
        if auth:
            self._session.auth = auth
        self._by_id: dict[int, str] = {}
        self._ids: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._call = backoff.on_exception(
            backoff.expo,
            (requests.ConnectionError, requests.Timeout),
            max_time=lambda: self.wait_s,
            max_value=RETRY_CAP_S,
            giveup=lambda _exc: cancelled is not None and cancelled(),
            on_backoff=self._waiting,
            logger=None,
        )(self._call_once)

    def _waiting(self, details: Any) -> None:
        exc = details.get("exception")
        log.warning(
            "schema registry %s unreachable (%s); retry %d in %.1f s (waited %.0f of %.0f s)",
            self.url,
            type(exc).__name__ if exc is not None else "?",
            details["tries"],
            details["wait"],
            details["elapsed"],
            self.wait_s,
        )

    def _call_once(self, method: str, path: str, body: Any = None) -> Any:
        resp = self._session.request(
            method,
            f"{self.url}{path}",
            timeout=self._timeout,
            data=None if body is None else json.dumps(body),
            headers={"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE},
        )
        if resp.status_code == 409:
            raise IncompatibleSchemaError(f"{method} {path}: 409 {resp.text}")
        if resp.status_code == 404:
            raise SchemaNotFoundError(f"{method} {self.url}{path}: 404 {resp.text}")
        if resp.status_code >= 400:
            raise RegistryError(f"{method} {self.url}{path}: {resp.status_code} {resp.text}")
        return resp.json() if resp.content else None

    def register(self, subject: str, schema: str) -> int:
        """Register (or find) `schema` under `subject`; returns its global id."""
        key = (subject, schema)
        with self._lock:
            if key in self._ids:
                return self._ids[key]
        answer = self._call(
            "POST", f"/subjects/{subject}/versions", {"schema": schema, "schemaType": "AVRO"}
        )
        schema_id = int(answer["id"])
        with self._lock:
            self._ids[key] = schema_id
            self._by_id[schema_id] = schema
        return schema_id

    def schema_by_id(self, schema_id: int) -> str:
        with self._lock:
            if schema_id in self._by_id:
                return self._by_id[schema_id]
        answer = self._call("GET", f"/schemas/ids/{schema_id}")
        with self._lock:
            self._by_id[schema_id] = answer["schema"]
        return str(answer["schema"])

    def subjects(self) -> list[str]:
        return list(self._call("GET", "/subjects"))

    def versions(self, subject: str) -> list[int]:
        return list(self._call("GET", f"/subjects/{subject}/versions"))

    def set_compatibility(self, level: str, subject: str | None = None) -> None:
        path = f"/config/{subject}" if subject else "/config"
        self._call("PUT", path, {"compatibility": level})

    def compatibility(self, subject: str | None = None) -> str:
        path = f"/config/{subject}" if subject else "/config"
        answer = self._call("GET", path)
        return str(answer.get("compatibilityLevel") or answer.get("compatibility"))

    def is_compatible(self, subject: str, schema: str) -> bool:
        answer = self._call(
            "POST",
            f"/compatibility/subjects/{subject}/versions/latest",
            {"schema": schema, "schemaType": "AVRO"},
        )
        return bool(answer.get("is_compatible"))
