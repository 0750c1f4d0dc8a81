"""The launcher renders a service's environment from its settings class."""

from __future__ import annotations

import pytest

from flink_job.settings import TaSettings
from forwarder.settings import ForwarderSettings
from shared.settings import SettingsError
from torghut.stack.apps import render_env


def test_a_misspelt_setting_is_refused_at_the_launch_site_with_the_nearest_name():
    with pytest.raises(SettingsError, match="did you mean 'checkpoint_interval_ms'"):
        render_env(TaSettings, {"checkpoint_intervall_ms": 1000})


def test_values_are_validated_by_the_settings_class_before_the_child_starts():
    with pytest.raises(ValueError, match="checkpoint_interval_ms"):
        render_env(TaSettings, {"checkpoint_interval_ms": 5})  # below the 1 s minimum


def test_the_environment_round_trips_into_the_same_settings(monkeypatch):
    env = render_env(
        ForwarderSettings,
        {
            "alpaca_url": "ws://127.0.0.1:1/v2/iex",
            "symbols": ("AAPL", "MSFT"),
            "linger_ms": 5,
            "native_produce": False,
            "alpaca_secret_key": "s",
        },
    )
    assert env["TORGHUT_FWD_SYMBOLS"] == "AAPL,MSFT"
    assert env["TORGHUT_FWD_NATIVE_PRODUCE"] == "false"
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s = ForwarderSettings()
    assert (s.symbols, s.linger_ms, s.native_produce, s.feed) == (("AAPL", "MSFT"), 5, False, "iex")
    assert s.alpaca_secret_key.get_secret_value() == "s"
