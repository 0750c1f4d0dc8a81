"""An Alpaca market-data v2 stock-stream compatible simulator (synthetic or replay,
with fault injection) for tests and benchmarks of the forwarder."""

from torghut.sim.config import ApiKey, FaultConfig, ReplayConfig, SimConfig, SyntheticConfig
from torghut.sim.recording import JsonlRecorder, read_jsonl
from torghut.sim.server import AlpacaSimServer, SimCounters
from torghut.sim.synthetic import SyntheticMarket
from torghut.sim.thread import SimServerThread

__all__ = [
    "AlpacaSimServer",
    "ApiKey",
    "FaultConfig",
    "JsonlRecorder",
    "ReplayConfig",
    "SimConfig",
    "SimCounters",
    "SimServerThread",
    "SyntheticConfig",
    "SyntheticMarket",
    "read_jsonl",
]
