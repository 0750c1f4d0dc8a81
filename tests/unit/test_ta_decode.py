"""The job's decode step: raw envelope bytes -> event tuple, or a typed rejection (never a
crash) for records without a key, with a key other than their symbol, undecodable bytes,
or a payload that does not belong to the channel."""

from __future__ import annotations

from flink_job.decode import REJECTED, REJECTED_KEY, decode_event
from shared.sale_conditions import VOLUME, trade_updates
from shared.serde import AvroDeserializer, AvroSerializer
from shared.topics import TRADES
from tests.support.records import PAYLOADS, envelope
from tests.support.registry import InMemoryRegistry

REG = InMemoryRegistry()
DESER = AvroDeserializer(REG, "torghut.Envelope")  # type: ignore[arg-type]
OUT = AvroSerializer(REG, TRADES)  # type: ignore[arg-type]
BRANCHES = {channel: (branch, payload) for branch, channel, payload in PAYLOADS}


def test_trade_and_quote_become_event_tuples() -> None:
    trade = decode_event(DESER, OUT.encode(envelope("trades", BRANCHES["trades"])), "AAPL")
    p = BRANCHES["trades"][1]
    assert trade == (
        "t",
        "AAPL",
        1_767_364_200_000_123_456,
        1,
        1_767_364_200_000_500_000,
        "abc",
        p["price"],
        p["size"],
        p["id"],
        trade_updates(p["tape"], tuple(p["conditions"])),
    )
    # the sample is an odd lot on tape C ("@", "I"): it may update volume only
    assert trade[-1] == VOLUME
    quote = decode_event(DESER, OUT.encode(envelope("quotes", BRANCHES["quotes"])), "AAPL")
    q = BRANCHES["quotes"][1]
    assert quote is not None and quote[0] == "q"
    assert quote[6:] == (q["bid_price"], q["bid_size"], q["ask_price"], q["ask_size"])


def test_channels_the_job_does_not_use_are_skipped() -> None:
    for channel in ("updatedBars", "statuses", "lulds", "status"):
        assert decode_event(DESER, OUT.encode(envelope(channel, BRANCHES[channel])), "AAPL") is None


def test_record_without_a_key_is_rejected() -> None:
    ev = decode_event(DESER, OUT.encode(envelope("trades", BRANCHES["trades"])), REJECTED_KEY)
    assert ev is not None and ev[0] == REJECTED and "no Kafka key" in ev[6]


def test_key_other_than_the_symbol_is_rejected() -> None:
    ev = decode_event(DESER, OUT.encode(envelope("trades", BRANCHES["trades"])), "MSFT")
    assert ev is not None and ev[0] == REJECTED
    assert "'MSFT'" in ev[6] and "'AAPL'" in ev[6]


def test_undecodable_bytes_are_rejected_with_the_serde_reason() -> None:
    good = OUT.encode(envelope("trades", BRANCHES["trades"]))
    for data, reason in (
        (good[:9], "ends early"),
        (good + b"\x00", "unread bytes"),
        (b"\x01" + good[1:], "magic"),
    ):
        ev = decode_event(DESER, data, "AAPL")
        assert ev is not None and ev[0] == REJECTED and reason in ev[6], (reason, ev)


def test_payload_of_another_channel_is_rejected_not_a_crash() -> None:
    ev = decode_event(DESER, OUT.encode(envelope("quotes", BRANCHES["trades"])), "AAPL")
    assert ev is not None and ev[0] == REJECTED and "payload of another type" in ev[6]
