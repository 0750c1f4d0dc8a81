"""The JSON wire format's bounded decoding (``forwarder/wire.py``, ``unpack_json_frame``): a
frame over 64 KiB is walked message by message without building objects, and each message
is decoded on its own. Pure logic: no engine."""

from __future__ import annotations

import tracemalloc
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forwarder.exceptions import InvalidMessageError
from forwarder.wire import EAGER_FRAME_BYTES, UndecodedMessage, unpack_json_frame

MiB = 1 << 20
LIMIT = 990_000

# JSON values whose text holds every character the walker has to get right: brackets and
# quotes inside strings, escapes, non-ASCII, nesting of both kinds, scalars
_text = st.text(alphabet=st.sampled_from('ab{}[]",:\\ é\n\t/'), max_size=12)
_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | _text
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=12,
)


def _pad(messages: list[Any]) -> list[Any]:
    """The messages plus a filler message so the frame is over ``EAGER_FRAME_BYTES``."""
    return [*messages, {"T": "filler", "x": "y" * (EAGER_FRAME_BYTES + 1)}]


def _walked(frame: str | bytes, max_bytes: int = LIMIT) -> list[Any]:
    out = unpack_json_frame(frame, max_bytes)
    assert not isinstance(out, list), "a frame over 64 KiB is walked lazily"
    return list(out)


@settings(max_examples=200, deadline=None)
@given(st.lists(_values, max_size=30), st.sampled_from(["", " ", "\n  "]))
def test_a_walked_frame_decodes_to_exactly_what_orjson_decodes_at_once(messages, space):
    # whitespace between the tokens the walker itself reads (joined per message: a string
    # may hold "},{" itself, and whitespace must never land inside one)
    parts = [orjson.dumps(m).decode() for m in _pad(messages)]
    frame = "[" + space + (space + "," + space).join(parts) + space + "]"
    assert len(frame) > EAGER_FRAME_BYTES
    assert _walked(frame) == orjson.loads(frame)
    assert _walked(frame.encode()) == orjson.loads(frame)


def test_a_small_frame_is_decoded_at_once_as_before():
    assert unpack_json_frame('[{"T":"t"}]', LIMIT) == [{"T": "t"}]


def test_a_message_over_the_limit_is_not_decoded_and_its_neighbours_are():
    frame = orjson.dumps([{"T": "t", "i": 1}, {"T": "n", "p": [{}] * 100_000}, {"T": "t", "i": 2}])
    first, big, last = _walked(frame, max_bytes=1 << 17)
    assert first == {"T": "t", "i": 1} and last == {"T": "t", "i": 2}
    assert isinstance(big, UndecodedMessage) and big.reason == "message_too_large"
    with pytest.raises(InvalidMessageError, match="TORGHUT_FWD_MAX_ENVELOPE_BYTES=131072"):
        big.get("T")


def test_a_wide_frame_of_tiny_objects_holds_one_message_at_a_time():
    """5 MiB of empty objects: orjson at once builds 1.7 million dicts (~150 MB); walked,
    Python holds one at a time."""
    frame = "[" + ",".join(["{}"] * (5 * MiB // 3)) + "]"
    tracemalloc.start()
    try:
        count = 0
        for message in unpack_json_frame(frame, LIMIT):
            assert message == {}
            count += 1
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 5 * MiB // 3
    assert peak < 1 * MiB, peak


@pytest.mark.parametrize(
    ("tail", "detail", "after"),
    [
        (',{"T":"t","i":', "breaks off", []),  # cut inside the second message
        (',"open string', "breaks off", []),
        (',{"a":1,},{"T":"t"}]', "JSONDecodeError", [{"T": "t"}]),  # one bad message
        ("] trailing", "characters after the frame's last message", []),
    ],
)
def test_a_frame_broken_after_its_first_message_forwards_what_came_before(tail, detail, after):
    good = orjson.dumps({"T": "t", "x": "y" * EAGER_FRAME_BYTES}).decode()
    messages = _walked("[" + good + tail)
    assert messages[0] == orjson.loads(good)
    bad = messages[1]
    assert isinstance(bad, UndecodedMessage)
    assert bad.reason == "malformed_message" and detail in bad.detail
    assert messages[2:] == after


@pytest.mark.parametrize(
    "frame",
    [
        '{"a":' + '"x",' * 30_000 + '"y"}',  # not an array
        '["' + "x" * EAGER_FRAME_BYTES,  # first message never ends
        "[" + "[" * 100_000 + "]" * 100_000 + "]",  # first message over orjson's depth limit
    ],
)
def test_a_frame_broken_from_its_first_message_is_one_malformed_frame(frame):
    with pytest.raises(ValueError, match="frame"):
        unpack_json_frame(frame, LIMIT)


def test_walking_is_linear_on_escaped_quotes_that_never_close():
    """A string of 100k escaped quotes that never closes: every quote is a place a naive
    pattern would restart from (quadratic); the walker finds the break once."""
    frame = '[{"T":"t"},"' + '\\"' * 100_000
    messages = _walked(frame)
    assert messages[0] == {"T": "t"}
    assert messages[-1].reason == "malformed_message"
