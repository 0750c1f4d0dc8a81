"""Where `torghut run` gets its market data: the simulator, an Alpaca account, or a recording.

The same forwarder runs for all three; only the WebSocket URL and the keys differ:

- ``sim``: the Alpaca-compatible simulator (`torghut sim`) on loopback, with local keys;
- ``alpaca``: Alpaca's market-data stream for a feed (iex, sip, delayed_sip, test), with the
  keys alpaca-py users already have in their environment (``APCA_API_KEY_ID``,
  ``APCA_API_SECRET_KEY``). The keys only ever travel in environment variables: never in
  argv (``ps`` shows argv to every user), never in a log line;
- ``replay``: the simulator sending a recording (`torghut run --record`, the forwarder's
  ``TORGHUT_FWD_RECORD_DIR``) back frame by frame, at its original pace × speed or as fast
  as the forwarder reads.

A missing or rejected key is one line saying what Alpaca answered and what to do
(`KeyProblem`), found before anything is started: `check_alpaca_keys` authenticates once
and closes, as the forwarder would at its first connection.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import orjson
from pydantic import SecretStr

SourceKind = Literal["sim", "alpaca", "replay"]
SOURCE_KINDS: tuple[SourceKind, ...] = ("sim", "alpaca", "replay")
ALPACA_FEEDS = ("iex", "sip", "delayed_sip", "test")
ALPACA_STREAM_URL = "wss://stream.data.alpaca.markets/v2/{feed}"
KEY_ENV, SECRET_ENV = "APCA_API_KEY_ID", "APCA_API_SECRET_KEY"
#: the symbol Alpaca's `test` feed streams around the clock
TEST_FEED_SYMBOL = "FAKEPACA"

# Alpaca's stream error codes (its docs, "Errors") -> what the user does about them
_WHAT_TO_DO = {
    401: "the stream was asked for data before authentication; report this as a bug",
    402: f"check {KEY_ENV} and {SECRET_ENV} (paper and live accounts have different keys; "
    "regenerating a key invalidates the old secret)",
    404: "authentication timed out; check the network to Alpaca and try again",
    406: "another connection already uses this key (Alpaca allows one per account): stop "
    "it or wait a minute, then try again",
    409: "the account's market-data plan does not include this feed: use --feed iex "
    "(free), or subscribe to the SIP feed",
}


class SourceError(ValueError):
    """A source given on the command line is not usable; the message says what to do."""


class KeyProblem(SourceError):
    """The Alpaca keys are missing or Alpaca refused them (`code` is Alpaca's, if any)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Source:
    kind: SourceKind
    path: Path | None = None  # the recording of a replay

    @classmethod
    def parse(cls, values: list[str]) -> Source:
        """`--source sim`, `--source alpaca` or `--source replay PATH`."""
        if not values or values[0] not in SOURCE_KINDS:
            raise SourceError(
                f"--source {' '.join(values)!s}: choose sim, alpaca or replay PATH "
                "(e.g. --source replay .data/recordings/run-...)"
            )
        kind = values[0]
        if kind == "replay":
            if len(values) != 2:
                raise SourceError(
                    "--source replay needs the recording: --source replay PATH (a directory "
                    "written by --record, one of its files or a glob)"
                )
            return cls("replay", Path(values[1]).expanduser())
        if len(values) != 1:
            raise SourceError(f"--source {kind} takes no argument, got {values[1:]}")
        return cls(kind)  # type: ignore[arg-type]


@dataclass(frozen=True)
class AlpacaKeys:
    key_id: SecretStr
    secret: SecretStr


def alpaca_keys_from_env(environ: Mapping[str, str] | None = None) -> AlpacaKeys:
    """The account's keys from the environment, as alpaca-py users have them set."""
    env = os.environ if environ is None else environ
    key, secret = env.get(KEY_ENV, "").strip(), env.get(SECRET_ENV, "").strip()
    missing = [name for name, value in ((KEY_ENV, key), (SECRET_ENV, secret)) if not value]
    if missing:
        raise KeyProblem(
            f"{' and '.join(missing)} not set: export your Alpaca API key id and secret "
            f"({KEY_ENV}, {SECRET_ENV}; the names alpaca-py uses) in this shell; they are "
            "read from the environment only, never from the command line"
        )
    return AlpacaKeys(SecretStr(key), SecretStr(secret))


def stream_url(feed: str, override: str | None = None) -> str:
    if feed not in ALPACA_FEEDS:
        raise SourceError(f"--feed {feed!r}: choose one of {', '.join(ALPACA_FEEDS)}")
    return override or ALPACA_STREAM_URL.format(feed=feed)


def explain(code: int | None, message: str) -> str:
    """One line for an error Alpaca's stream sent: its code and message, and what to do."""
    what = _WHAT_TO_DO.get(code or 0, "see Alpaca's market-data stream documentation")
    return f"Alpaca refused the connection: error {code} {message!r}: {what}"


async def _authenticate(url: str, keys: AlpacaKeys, timeout_s: float) -> None:
    from websockets.asyncio.client import connect

    async with connect(
        url, open_timeout=timeout_s, close_timeout=2, user_agent_header="torghut-run"
    ) as ws:
        for expected in ("connected", "authenticated"):
            raw = await asyncio.wait_for(ws.recv(), timeout_s)
            msgs = orjson.loads(raw)
            msg = msgs[0] if isinstance(msgs, list) and msgs else {}
            if msg.get("T") == "error":
                code = msg.get("code")
                raise KeyProblem(explain(code, str(msg.get("msg", ""))), code)
            if msg.get("T") != "success" or msg.get("msg") != expected:
                raise KeyProblem(f"{url} answered {msgs!r} where Alpaca says {expected!r}")
            if expected == "connected":
                await ws.send(
                    orjson.dumps(
                        {
                            "action": "auth",
                            "key": keys.key_id.get_secret_value(),
                            "secret": keys.secret.get_secret_value(),
                        }
                    ).decode()
                )


def check_alpaca_keys(url: str, keys: AlpacaKeys, timeout_s: float = 10.0) -> None:
    """Authenticate once at `url` and close; `KeyProblem` with one clear line if refused."""
    from websockets.exceptions import InvalidHandshake, InvalidURI

    try:
        asyncio.run(_authenticate(url, keys, timeout_s))
    except KeyProblem:
        raise
    except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
        raise SourceError(
            f"cannot reach Alpaca's stream at {url}: {type(exc).__name__}: {exc} "
            "(check the network, or --alpaca-url)"
        ) from None
