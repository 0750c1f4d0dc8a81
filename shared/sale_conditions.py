"""Which trades may set a bar's prices and volume: the consolidated tape's sale-condition rules.

One table, tape x condition -> what the trade updates, used by the job's bar builder
(`shared/bars.py` through `trade_updates`), the backfill, the simulator's minute bars and
the tests' oracle. docs/design.md ("Condition-aware bars") says how a bar uses the flags.

Sources (the consolidated last-sale eligibility each plan's processor applies):

* Tapes A and B, the CTA plan: "CTS Pillar Output Specification", the Sale Condition
  table with its "Consolidated Processing Guidelines" (update high/low, update last,
  update volume), version 2.x as published by the CTA plan (ctaplan.com) in 2024.
* Tape C, the UTP plan: "UTP Trade Data Feed (UTDF) Specification", Appendix "Sale
  Condition Matrix" (consolidated columns), version 14.x as published by the UTP plan
  (utpplan.com) in 2024.

Alpaca passes the conditions through as the plans' one-character codes (``c``; CTA's
regular sale, a blank, arrives as ``@``) and the tape as ``z``. The specs' few
conditional cells ("updates last if it is the only trade", "sold last updates last
unless ...") are taken as their unconditional column: a bar cannot see the rest of the
day's tape. A trade with several conditions updates a field only if every condition
allows it (each condition can only take an update away). A code in neither table (a new
one) restricts nothing and is reported once (`unknown_codes`); an unknown tape (an
empty ``z``: crypto, the simulator's old recordings) takes the CTA rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache

from shared.market_calendar import is_regular_hours

#: the trade may set the bar's high and low
HIGH_LOW = 1
#: the trade may set the bar's open and close (the consolidated last sale)
LAST = 2
#: the trade's size counts in the bar's volume (and trade_count)
VOLUME = 4
ALL = HIGH_LOW | LAST | VOLUME
NONE = 0
#: the trade carries Form T (``T``, an extended-hours trade): `trade_updates` then also
#: packs, in bits 4-6, what it may update outside the regular session (`resolve`)
FORM_T = 8
_EXTENDED_SHIFT = 4

_HLV = HIGH_LOW | LAST | VOLUME
_H_V = HIGH_LOW | VOLUME
_V = VOLUME
_HL_ = HIGH_LOW | LAST

#: tapes A and B (NYSE- and regional-listed securities), CTA plan: code -> (name, updates)
CTA: dict[str, tuple[str, int]] = {
    "@": ("Regular Sale", _HLV),
    "B": ("Average Price Trade", _V),
    "C": ("Cash Trade (Same Day Clearing)", _V),
    "E": ("Automatic Execution", _HLV),
    "F": ("Intermarket Sweep Order", _HLV),
    "H": ("Price Variation Trade", _V),
    "I": ("Odd Lot Trade", _V),
    "K": ("Rule 127 (NYSE) or Rule 155 (NYSE American) Trade", _HLV),
    "L": ("Sold Last (Late Reporting)", _HLV),
    "M": ("Market Center Official Close", NONE),
    "N": ("Next Day Trade", _V),
    "O": ("Market Center Opening Trade", _HLV),
    "P": ("Prior Reference Price", _H_V),
    "Q": ("Market Center Official Open", NONE),
    "R": ("Seller", _V),
    "T": ("Extended Hours Trade (Form T)", _V),
    "U": ("Extended Hours Sold (Out of Sequence)", _V),
    "V": ("Contingent Trade", _V),
    "X": ("Cross Trade", _HLV),
    "Z": ("Sold (Out of Sequence)", _H_V),
    "4": ("Derivatively Priced", _H_V),
    "5": ("Market Center Reopening Trade", _HLV),
    "6": ("Market Center Closing Trade", _HLV),
    "7": ("Qualified Contingent Trade", _V),
    "9": ("Corrected Consolidated Close (per Listing Market)", _HL_),
}

#: tape C (Nasdaq-listed securities), UTP plan: code -> (name, updates)
UTP: dict[str, tuple[str, int]] = {
    "@": ("Regular Sale", _HLV),
    "A": ("Acquisition", _HLV),
    "B": ("Bunched Trade", _HLV),
    "C": ("Cash Sale", _V),
    "D": ("Distribution", _HLV),
    "F": ("Intermarket Sweep", _HLV),
    "G": ("Bunched Sold Trade", _H_V),
    "H": ("Price Variation Trade", _V),
    "I": ("Odd Lot Trade", _V),
    "K": ("Rule 155 Trade (NYSE American)", _HLV),
    "L": ("Sold Last", _HLV),
    "M": ("Market Center Official Close", NONE),
    "N": ("Next Day", _V),
    "O": ("Opening Prints", _HLV),
    "P": ("Prior Reference Price", _H_V),
    "Q": ("Market Center Official Open", NONE),
    "R": ("Seller", _V),
    "S": ("Split Trade", _HLV),
    "T": ("Form T (Extended Hours)", _V),
    "U": ("Extended Trading Hours (Sold Out of Sequence)", _V),
    "V": ("Contingent Trade", _V),
    "W": ("Average Price Trade", _V),
    "X": ("Cross Trade", _HLV),
    "Y": ("Yellow Flag Regular Trade", _HLV),
    "Z": ("Sold (Out of Sequence)", _H_V),
    "1": ("Stopped Stock (Regular Trade)", _HLV),
    "4": ("Derivatively Priced", _H_V),
    "5": ("Re-Opening Prints", _HLV),
    "6": ("Closing Prints", _HLV),
    "7": ("Qualified Contingent Trade", _V),
    "8": ("Placeholder for 611 Exempt", _HLV),
    "9": ("Corrected Consolidated Close (per Listing Market)", _HL_),
}

#: codes seen that neither table knows (each restricted nothing); the job logs a new one once
unknown_codes: set[tuple[str, str]] = set()


def table_for(tape: str) -> dict[str, tuple[str, int]]:
    """The rules of `tape` ("A", "B", "C"; anything else: CTA's)."""
    return UTP if tape == "C" else CTA


@lru_cache(maxsize=4096)
def _updates(tape: str, conditions: tuple[str, ...]) -> int:
    table = table_for(tape)
    flags = extended = ALL
    form_t = 0
    for code in conditions:
        code = code.strip() or "@"
        rule = table.get(code)
        if rule is None:
            unknown_codes.add((tape, code))
            continue
        flags &= rule[1]
        if code == "T":
            form_t = FORM_T
        else:
            extended &= rule[1]
    return flags | form_t | (extended << _EXTENDED_SHIFT if form_t else 0)


def resolve(flags: int, event_ns: int) -> int:
    """The HIGH_LOW | LAST | VOLUME bits of a trade at `event_ns`.

    Outside the NYSE regular session (`shared.market_calendar`: holidays and early closes
    included) Form T is the session's ordinary trade, and vendors' extended-hours bars are
    priced by it: there the ``T`` condition restricts nothing (the trade's other
    conditions still apply). Inside, it is a late report of an extended-hours trade and
    updates volume only, as the table says.
    """
    if flags & FORM_T and not is_regular_hours(event_ns):
        return flags >> _EXTENDED_SHIFT & ALL
    return flags & ALL


def trade_updates(tape: str, conditions: Sequence[str] | Iterable[str]) -> int:
    """What a trade with `conditions` on `tape` may update: HIGH_LOW | LAST | VOLUME bits,
    plus FORM_T and the extended-hours bits for a Form T trade (`resolve` turns them into
    the bits at the trade's time).

    No conditions at all is a regular sale (every update).
    """
    return _updates(tape, conditions if isinstance(conditions, tuple) else tuple(conditions))


def describe(flags: int) -> str:
    """``high/low, last, volume`` (or ``nothing``) for messages and docs."""
    parts = [
        n for bit, n in ((HIGH_LOW, "high/low"), (LAST, "last"), (VOLUME, "volume")) if flags & bit
    ]
    return ", ".join(parts) or "nothing"
