"""The Alpaca WebSocket -> Kafka forwarder.

Reads Alpaca market-data v2 (msgpack or JSON), drops duplicates, wraps every message in the
Avro ``torghut.Envelope`` with a per (channel, symbol) ``seq`` that stays monotonic across
restarts, and produces it idempotently (``acks=all``, lz4) to the raw topics of
``shared.topics``. Status events (connect, disconnect, attempts, rejected frames) go to
``torghut.status.v1``. See ``docs/forwarder.md``.
"""
