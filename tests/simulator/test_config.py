import pytest

from simulator.config import ConfigError, load_config


def test_defaults_have_three_symbols_with_leaders():
    cfg = load_config()
    assert cfg.symbols == ["BTC-USD", "ETH-USD", "SOL-USD"]
    assert cfg.product("ETH-USD").leader.symbol == "BTC-USD"
    assert 1.0 <= cfg.product("ETH-USD").leader.lag_s <= 3.0
    assert 1.0 <= cfg.product("SOL-USD").leader.lag_s <= 3.0


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"signal.half_life_s": -1}, "signal.half_life_s"),
        ({"products.BTC-USD.tick_size": "abc"}, "products.BTC-USD.tick_size"),
        ({"regimes.vol_multiplier": [1, 2]}, "regimes.vol_multiplier"),
        ({"latent_dt_ms": 7}, "latent_dt_ms"),
        ({"start": "yesterday"}, "start"),
        ({"products.SOL-USD.hawkes_branching": 1.5}, "products.SOL-USD.hawkes_branching"),
    ],
)
def test_invalid_values_name_the_field(overrides, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_config(overrides=overrides)


def test_unknown_override_and_symbol():
    with pytest.raises(ConfigError, match="unknown field 'nope'"):
        load_config(overrides={"signal.nope": 1})
    with pytest.raises(ConfigError, match="unknown symbol"):
        load_config(symbols=["DOGE-USD"])
    with pytest.raises(ConfigError, match="select both"):
        load_config(symbols=["SOL-USD"])


def test_user_file_names_file_on_error(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("signal:\n  drift_loading: fast\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*signal\.drift_loading"):
        load_config(f)
    f.write_text("products:\n  BTC-USD:\n    initial_price: 50000.0\n")
    assert load_config(f).product("BTC-USD").initial_price == 50000.0


def test_cli_reports_config_errors(capsys):
    from l2lab.cli import main

    assert main(["sim", "--set", "signal.half_life_s=0", "--duration", "1"]) == 2
    assert "signal.half_life_s" in capsys.readouterr().err
