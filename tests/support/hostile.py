"""Hostile input for the forwarder in tests: a seeded fuzzer of broken Alpaca frames and a
WebSocket server that speaks Alpaca's handshake, then sends whatever frames a test queues."""

from __future__ import annotations

import asyncio
import random
import threading

import msgpack
import orjson
from websockets.asyncio.server import serve

from tests.support.forwarder import market
from torghut.sim import SyntheticMarket

#: what a field of a hostile frame is replaced by (types and values no Alpaca field has)
JUNK = [
    None,
    "",
    "x" * 300,
    -1,
    0,
    2**64 - 1,
    -(2**63),
    1.5,
    float("nan"),
    [],
    {},
    True,
    b"\x00\xff",
    {"a": [1, {"b": None}]},
    [[[[]]]],
    "2024-13-45T99:99:99Z",
    msgpack.Timestamp(0, 0),
    "\ud7ff\u0000",
]


def hostile_frames(n: int, seed: int) -> list[bytes | str]:
    """A seeded mutation fuzzer: valid Alpaca frames from the synthetic market, broken in
    every way a network, a proxy or a buggy server could break them."""
    rng = random.Random(seed)
    t0 = 1_700_000_000_000_000_000
    mkt = SyntheticMarket(
        market(("FUZZA", "FUZZB"), trades_per_sec=20, quotes_per_sec=20, late_rate=0.05), t0, seed
    )
    base = mkt.advance(t0 + 130 * 10**9) + mkt.finish()
    out: list[bytes | str] = []
    for _ in range(n):
        msgs = [dict(m) for m in rng.sample(base, rng.randint(1, 5))]
        kind = rng.randrange(8)
        if kind == 0:  # field replaced by junk
            m = rng.choice(msgs)
            m[rng.choice(list(m))] = rng.choice(JUNK)
        elif kind == 1:  # field missing
            m = rng.choice(msgs)
            del m[rng.choice(list(m))]
        elif kind == 2:  # unknown or non-string type, non-dict elements
            msgs[0]["T"] = rng.choice(["zz", "", 7, None, "T" * 100, ["t"]])
            msgs.append(rng.choice(JUNK))
        elif kind == 3:  # extra keys of odd types
            msgs[0][rng.choice(["extra", "", "\u0000"])] = rng.choice(JUNK)
        wire = [
            {**m, "t": msgpack.Timestamp.from_unix_nano(m["t"])}
            if isinstance(m, dict) and type(m.get("t")) is int and 0 < m["t"] < 2**63
            else m
            for m in msgs
        ]
        try:
            frame = msgpack.packb(wire, datetime=False)
        except (OverflowError, TypeError, ValueError):
            frame = b"\xc1"
        if kind == 4:  # truncated
            frame = frame[: rng.randrange(len(frame))]
        elif kind == 5:  # bit flips
            b = bytearray(frame)
            for _ in range(rng.randint(1, 4)):
                b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
            frame = bytes(b)
        elif kind == 6:  # random bytes, a top-level non-array, or a JSON text frame
            frame = rng.choice(
                [
                    rng.randbytes(rng.randint(0, 64)),
                    msgpack.packb({"T": "t"}),
                    msgpack.packb(42),
                    orjson.dumps([{"T": "t", "S": "A"}]).decode(),
                    "not json at all",
                ]
            )
        out.append(frame)
    return out


class HostileServer:
    """Speaks Alpaca's handshake, then sends whatever frames the test queues."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.queue: asyncio.Queue | None = None
        self.port = 0
        ready = threading.Event()
        threading.Thread(target=self._main, args=(ready,), daemon=True).start()
        ready.wait(10)

    def _main(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.queue = asyncio.Queue()

        async def handler(ws):
            pack = msgpack.packb
            await ws.send(pack([{"T": "success", "msg": "connected"}]))
            await ws.recv()
            await ws.send(pack([{"T": "success", "msg": "authenticated"}]))
            await ws.recv()
            await ws.send(pack([{"T": "subscription", "trades": ["*"]}]))
            while True:
                await ws.send(await self.queue.get())

        async def start():
            server = await serve(handler, "127.0.0.1", 0, max_size=None)
            self.port = next(iter(server.sockets)).getsockname()[1]
            ready.set()
            await server.serve_forever()

        self.loop.run_until_complete(start())

    def send(self, frame: bytes | str) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, frame)
