"""The forwarder takes the Alpaca keys under its own names or the ones alpaca-py users
already have set (APCA_API_KEY_ID / APCA_API_SECRET_KEY); its own names win."""

from __future__ import annotations

import pytest

from forwarder.settings import ForwarderSettings


@pytest.fixture
def clean_env(monkeypatch):
    for name in (
        "APCA_API_KEY_ID",
        "APCA_API_SECRET_KEY",
        "TORGHUT_FWD_ALPACA_KEY_ID",
        "TORGHUT_FWD_ALPACA_SECRET_KEY",
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_alpaca_py_names_are_read(clean_env):
    clean_env.setenv("APCA_API_KEY_ID", "PKABC")
    clean_env.setenv("APCA_API_SECRET_KEY", "secret-1")
    s = ForwarderSettings()
    assert s.alpaca_key_id.get_secret_value() == "PKABC"
    assert s.alpaca_secret_key.get_secret_value() == "secret-1"
    assert "secret-1" not in repr(s)


def test_the_forwarders_own_names_win(clean_env):
    clean_env.setenv("APCA_API_KEY_ID", "PKABC")
    clean_env.setenv("TORGHUT_FWD_ALPACA_KEY_ID", "PKOWN")
    assert ForwarderSettings().alpaca_key_id.get_secret_value() == "PKOWN"
    assert ForwarderSettings(alpaca_key_id="PKKW").alpaca_key_id.get_secret_value() == "PKKW"
