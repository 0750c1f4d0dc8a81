"""Load the Avro schemas in `schemas/avro/` by record full name."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import fastavro

AVRO_DIR = Path(
    os.environ.get("TORGHUT_SCHEMA_DIR", Path(__file__).resolve().parents[1] / "schemas" / "avro")
)


@functools.cache
def all_schemas() -> dict[str, dict[str, Any]]:
    """Full record name -> schema JSON (as written in the .avsc file)."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(AVRO_DIR.glob("*.avsc")):
        raw = json.loads(path.read_text())
        name = f"{raw['namespace']}.{raw['name']}" if "namespace" in raw else raw["name"]
        out[name] = raw
    return out


def schema_json(full_name: str) -> dict[str, Any]:
    try:
        return all_schemas()[full_name]
    except KeyError:
        raise KeyError(
            f"no Avro schema {full_name!r} in {AVRO_DIR}; have {sorted(all_schemas())}"
        ) from None


def schema_text(full_name: str) -> str:
    """Canonical-ish JSON text registered with the registry."""
    return json.dumps(schema_json(full_name), separators=(",", ":"), sort_keys=False)


@functools.cache
def parsed(full_name: str) -> Any:
    return fastavro.parse_schema(schema_json(full_name))
