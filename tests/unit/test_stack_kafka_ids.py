"""The local KRaft cluster id is what `kafka-storage format -t` accepts."""

from __future__ import annotations

import base64
import uuid

from torghut.stack import kafka


def test_cluster_ids_never_start_with_a_dash_even_when_the_uuid_would(monkeypatch) -> None:
    # 0xf8.. encodes to a leading '-' in URL-safe base64: the first draw must be redrawn
    dash = uuid.UUID(bytes=bytes([0xF8]) + bytes(15))
    assert base64.urlsafe_b64encode(dash.bytes).decode().startswith("-")
    draws = iter([dash, uuid.UUID(int=12345)])
    monkeypatch.setattr(kafka.uuid, "uuid4", lambda: next(draws))
    cid = kafka.new_cluster_id()
    assert cid == base64.urlsafe_b64encode(uuid.UUID(int=12345).bytes).decode().rstrip("=")


def test_cluster_ids_are_22_urlsafe_chars_and_never_lead_with_a_dash() -> None:
    ids = [kafka.new_cluster_id() for _ in range(5000)]
    assert all(len(c) == 22 and not c.startswith("-") for c in ids)
    assert all(
        set(c) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        for c in ids
    )
