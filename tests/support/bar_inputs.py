"""What the bar tests draw trades from: two times of day on both sides of the NYSE regular
session and a hypothesis strategy of sale-condition tuples (codes of the tape's table,
unknown ones and none)."""

from __future__ import annotations

from datetime import datetime

from hypothesis import strategies as st

from shared import sale_conditions as table
from tests.support.bar_oracle import NEW_YORK

S = 1_000_000_000
#: 10:00 New York on a trading day (Form T is volume only) and 18:00 (it prices bars)
IN_SESSION = int(datetime(2026, 12, 4, 10, tzinfo=NEW_YORK).timestamp()) * S
AFTER_HOURS = int(datetime(2026, 12, 4, 18, tzinfo=NEW_YORK).timestamp()) * S
CODES = [*sorted(set(table.CTA) | set(table.UTP)), "J", " "]
#: sale conditions; regular sales more often than not, so bars mix prices, odd lots and the rest
CONDITIONS = st.one_of(
    st.just(("@",)),
    st.just(()),
    st.sampled_from([("@", "I"), ("I",), ("Z",), ("T",), ("M",), ("9",), ("B",), ("@", "F")]),
    st.lists(st.sampled_from(CODES), max_size=3).map(tuple),
)
