"""The simulator's historical REST endpoints (torghut/sim/history.py), answered without
sockets: Alpaca's shapes, pagination that gives the same records for any page size, sort
and split of the range, auth, the rate limit and its headers, and bad parameters. Through
sockets and the official alpaca-py client: tests/integration/test_sim_history_alpaca.py."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from torghut.sim.config import ApiKey, HistoryConfig, SimConfig
from torghut.sim.history import History, HistoryApi, is_history_path
from torghut.sim.server import SimCounters
from torghut.sim.timestamps import format_rfc3339_ns, parse_rfc3339_ns

S = 1_000_000_000
START = "2026-12-04T14:30:00Z"
END = "2026-12-04T14:31:00Z"
T0 = parse_rfc3339_ns(START)
HISTORY = HistoryConfig(
    start=START, end=END, symbols=("MSFT", "AAPL", "NVDA"), trades_per_sec=2, quotes_per_sec=1
)
AUTH = {"APCA-API-KEY-ID": "key", "APCA-API-SECRET-KEY": "secret"}


class Clock:
    def __init__(self) -> None:
        self.now = 1_796_677_000.25

    def __call__(self) -> float:
        return self.now


def _api(clock: Clock | None = None, **more: Any) -> HistoryApi:
    cfg = SimConfig(history=HISTORY, **{"history_rate_limit": 100_000, **more})
    return HistoryApi(cfg, SimCounters(), clock or Clock())


API = _api()  # one history for the read-only tests (generated once)


def _get(api: HistoryApi, path: str, headers: dict[str, str] = AUTH, **params: Any):
    query = "&".join(f"{k}={v}" for k, v in params.items())
    answer = api.answer(f"{path}?{query}" if query else path, headers)
    return answer.status, orjson.loads(answer.body), answer.headers


def _all_pages(api: HistoryApi, path: str, **params: Any) -> tuple[dict[str, list], int]:
    """Every record over all pages (multi: per symbol, in answer order), and the requests."""
    out: dict[str, list] = {}
    token, requests = None, 0
    while True:
        extra = {"page_token": token} if token else {}
        status, body, _ = _get(api, path, **params, **extra)
        requests += 1
        assert status == 200, body
        kind = "trades" if "trades" in body else "quotes"
        if isinstance(body[kind], list):
            out.setdefault(body["symbol"], []).extend(body[kind])
        else:
            for sym, rows in body[kind].items():
                out.setdefault(sym, []).extend(rows)
        token = body["next_page_token"]
        if token is None:
            return out, requests


def test_answers_have_alpacas_shapes_sorted_by_time_and_equal_the_history() -> None:
    status, body, headers = _get(API, "/v2/stocks/trades", symbols="MSFT,AAPL", start=START)
    assert status == 200 and set(body) == {"trades", "next_page_token"}
    assert list(body["trades"]) == ["AAPL", "MSFT"]  # alphabetical, as Alpaca pages them
    trade = body["trades"]["AAPL"][0]
    assert list(trade) == ["t", "x", "p", "s", "c", "i", "z"]
    assert trade["t"].endswith("Z") and isinstance(trade["i"], int) and trade["p"] > 0
    status, body, _ = _get(API, "/v2/stocks/NVDA/quotes", start=START, end=END, limit=10_000)
    assert set(body) == {"quotes", "symbol", "next_page_token"} and body["symbol"] == "NVDA"
    assert list(body["quotes"][0]) == ["t", "ax", "ap", "as", "bx", "bp", "bs", "c", "z"]
    times = [parse_rfc3339_ns(q["t"]) for q in body["quotes"]]
    assert times == sorted(times) and times[0] >= T0 and times[-1] < T0 + 60 * S
    assert body["quotes"] == API.history.records("sip", "quotes", "NVDA")  # type: ignore[union-attr]
    assert headers["X-RateLimit-Limit"] == "100000"


def test_the_history_is_a_function_of_its_config_with_iex_reporting_exchange_v() -> None:
    again = History(HISTORY)
    assert again.tape("sip").rows == API.history.tape("sip").rows  # type: ignore[union-attr]
    iex = again.records("iex", "trades", "AAPL")
    assert iex and {t["x"] for t in iex} == {"V"}
    assert len({t["x"] for t in again.records("sip", "trades", "AAPL")}) > 3
    assert again.tape("delayed_sip") is again.tape("sip")  # SIP feeds share one history


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    limit=st.integers(1, 80),
    desc=st.booleans(),
    kind=st.sampled_from(["trades", "quotes"]),
    split=st.integers(1, 59 * S),
)
def test_pages_of_any_size_and_any_split_of_the_range_give_the_same_records(
    limit: int, desc: bool, kind: str, split: int
) -> None:
    sort = "desc" if desc else "asc"
    full, _ = _all_pages(
        API, f"/v2/stocks/{kind}", symbols="AAPL,MSFT,NVDA", start=START, end=END, limit=10_000
    )
    paged, requests = _all_pages(
        API, f"/v2/stocks/{kind}", symbols="AAPL,MSFT,NVDA", start=START, end=END, limit=limit,
        sort=sort,
    )  # fmt: skip
    total = sum(len(v) for v in full.values())
    assert requests == max(1, -(-total // limit))
    for sym, rows in full.items():
        assert paged[sym] == (rows[::-1] if desc else rows)
        # two requests split at any instant (end is inclusive: the first ends 1 ns before)
        cut = format_rfc3339_ns(T0 + split)
        before = format_rfc3339_ns(T0 + split - 1)
        a, _ = _all_pages(API, f"/v2/stocks/{sym}/{kind}", start=START, end=before, limit=limit)
        b, _ = _all_pages(API, f"/v2/stocks/{sym}/{kind}", start=cut, end=END, limit=limit)
        assert a.get(sym, []) + b.get(sym, []) == rows


def test_missing_and_wrong_keys_and_a_feed_the_key_lacks_are_refused_like_alpaca() -> None:
    api = _api(keys=(ApiKey(key="key", secret="secret", feeds=("iex",)),))
    status, body, headers = _get(api, "/v2/stocks/AAPL/trades", headers={})
    assert (status, body) == (401, {"message": "unauthorized."})
    assert {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} <= set(headers)
    wrong = {**AUTH, "APCA-API-SECRET-KEY": "nope"}
    assert _get(api, "/v2/stocks/AAPL/trades", headers=wrong)[:2] == (
        403,
        {"message": "forbidden."},
    )
    status, body, _ = _get(api, "/v2/stocks/AAPL/trades", feed="sip", start=START)
    assert (status, body) == (
        403,
        {"message": "subscription does not permit querying recent SIP data"},
    )
    status, body, _ = _get(api, "/v2/stocks/AAPL/trades", start=START, end=END)
    assert status == 200 and {t["x"] for t in body["trades"]} == {"V"}  # default: its IEX feed


def test_beyond_the_rate_limit_answers_429_with_the_headers_until_the_window_resets() -> None:
    clock = Clock()
    api = _api(clock, history_rate_limit=3, history_rate_window_s=60)
    seen = []
    for _ in range(5):
        status, body, h = _get(api, "/v2/stocks/AAPL/trades", start=START, end=END)
        seen.append((status, h["X-RateLimit-Remaining"]))
    assert seen == [(200, "2"), (200, "1"), (200, "0"), (429, "0"), (429, "0")]
    assert body == {"code": 42910000, "message": "rate limit exceeded"}
    reset = int(h["X-RateLimit-Reset"])
    assert h["X-RateLimit-Limit"] == "3" and reset == math.ceil(clock.now + 60)
    assert api.counters.history_rate_limited == {"symbol_trades": 2}
    assert api.counters.history_requests == {"symbol_trades": 3}
    clock.now = reset
    assert _get(api, "/v2/stocks/AAPL/trades", start=START)[0] == 200


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({"limit": 0}, 422, "invalid limit: must be between 1 and 10000, got 0"),
        ({"limit": 10_001}, 422, "invalid limit"),
        ({"limit": "ten"}, 400, "Invalid format for parameter limit"),
        ({"start": "yesterday"}, 400, "Invalid format for parameter start: error parsing 'yesterday' as RFC3339 or 2006-01-02 time"),
        ({"start": END, "end": START}, 422, "end should not be before start"),
        ({"sort": "up"}, 422, "invalid sort"),
        ({"feed": "nasdaq"}, 422, "invalid feed"),
        ({"asof": "2026/12/04"}, 400, "Invalid format for parameter asof"),
        ({"currency": "EUR"}, 422, "unsupported currency EUR"),
        ({"timeframe": "1Min"}, 400, "unexpected query parameter(s): timeframe"),
        ({"page_token": "bm9wZQ"}, 400, "invalid page_token"),
    ],
)  # fmt: skip
def test_bad_parameters_get_400_or_422_with_alpacas_code_and_message(
    params: dict[str, Any], status: int, message: str
) -> None:
    got, body, headers = _get(API, "/v2/stocks/trades", symbols="AAPL", **params)
    assert got == status and body["code"] == status * 100_000 + (
        10_001 if status == 400 else 10_000
    )
    assert body["message"].startswith(message)
    assert "X-RateLimit-Remaining" in headers


def test_other_answers_symbols_asof_currency_and_paths() -> None:
    assert _get(API, "/v2/stocks/trades")[:2] == (
        400,
        {"code": 40010001, "message": "symbols is required"},
    )
    status, body, _ = _get(API, "/v2/stocks/ZZZZ/trades", start=START, asof="-", currency="USD")
    assert status == 200 and body == {
        "trades": [],
        "symbol": "ZZZZ",
        "next_page_token": None,
        "currency": "USD",
    }
    assert _get(API, "/v2/stocks/bars", symbols="AAPL")[0] == 404
    assert is_history_path("/v2/stocks/trades?symbols=A") and not is_history_path("/v2/iex")
    empty = HistoryApi(SimConfig(), SimCounters(), Clock())
    status, body, _ = _get(empty, "/v2/stocks/AAPL/trades")
    assert status == 404 and "--history-start" in body["message"]
