"""Subscription answers and filtering follow Alpaca: wildcard, corrections follow trades."""

import pytest

from torghut.sim.protocol import Subscription, SubscriptionRequestError


def test_answer_lists_every_channel_and_corrections_follow_trades():
    sub = Subscription()
    sub.apply("subscribe", Subscription.parse_request({"trades": ["AAPL", "MSFT"], "bars": ["*"]}))
    assert sub.answer() == [
        {
            "T": "subscription",
            "trades": ["AAPL", "MSFT"],
            "quotes": [],
            "bars": ["*"],
            "updatedBars": [],
            "dailyBars": [],
            "statuses": [],
            "lulds": [],
            "corrections": ["AAPL", "MSFT"],
            "cancelErrors": ["AAPL", "MSFT"],
        }
    ]


def test_wildcard_and_symbol_filtering():
    sub = Subscription()
    sub.apply("subscribe", {"trades": ["AAPL"], "quotes": ["*"]})
    assert sub.wants({"T": "t", "S": "AAPL"})
    assert sub.wants({"T": "c", "S": "AAPL"}) and sub.wants({"T": "x", "S": "AAPL"})
    assert not sub.wants({"T": "t", "S": "MSFT"})
    assert sub.wants({"T": "q", "S": "ANYTHING"})
    assert not sub.wants({"T": "b", "S": "AAPL"})


def test_unsubscribe_removes_symbols_and_keeps_order():
    sub = Subscription()
    sub.apply("subscribe", {"trades": ["C", "A", "B"]})
    sub.apply("unsubscribe", {"trades": ["A"]})
    assert sub.answer()[0]["trades"] == ["C", "B"]
    assert sub.symbols_after("subscribe", {"quotes": ["D", "*"]}) == {"B", "C", "D"}


def test_malformed_request_is_rejected():
    with pytest.raises(SubscriptionRequestError):
        Subscription.parse_request({"trades": "AAPL"})
