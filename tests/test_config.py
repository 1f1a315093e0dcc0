"""Config: the shipped file loads; unknown keys, wrong types and impossible values name the key."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from daemon import config
from daemon.service.cli import main
from tests.conftest import REPO


def test_shipped_config_loads() -> None:
    cfg = config.load(REPO / "config.toml")
    assert cfg.exchange.endpoint == "local"
    assert cfg.exchange.timeframes == ("1s", "1m", "1h", "1d")
    assert cfg.source.endswith("config.toml")


def test_config_is_frozen() -> None:
    cfg = config.load(REPO / "config.toml")
    with pytest.raises(Exception):
        cfg.exchange.symbol = "X/Y"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[exchange]\nsymbl = 'ETH/USDT'\n", "unknown key exchange.symbl"),
        ("[exchnge]\n", "unknown key exchnge"),
        ("[exchange]\nwarmup_bars = 'many'\n", "exchange.warmup_bars: expected int"),
        ("[exchange]\nwarmup_bars = 3\n", "exchange.warmup_bars"),
        ("[exchange]\nendpoint = 'mainnet'\n", "exchange.endpoint: 'mainnet' is not one of"),
        ("[exchange]\ntimeframes = ['1m', '7m']\n", "exchange.timeframes: unknown timeframe '7m'"),
        ("[local_exchange]\nspeed = -1\n", "local_exchange.speed"),
        ("[local_exchange]\nhost = '0.0.0.0'\n", "local_exchange.host"),
        ("[exchange]\nstall_factor = true\n", "exchange.stall_factor: expected a number"),
        ("exchange = 3\n", "exchange: expected a table"),
        ("[exchange]\nsymbols = ['ETH/USDT', 'SOL/USDT', 'ETH/USDT']\n", "exchange.symbols[2]: 'ETH/USDT' is listed twice"),
        ("[exchange]\nsymbols = []\n", "exchange.symbols: is empty; list at least one symbol"),
        ("[exchange]\nsymbols = ['ETHUSDT']\n", "exchange.symbols[0]: expected BASE/QUOTE, got 'ETHUSDT'"),
        ("[exchange]\nsymbol = 'ETH/USDT'\nsymbols = ['SOL/USDT']\n", "exchange.symbol: give exchange.symbols or"),
        (
            "[exchange]\nsymbols = ['ETH/USDT']\n[symbols.'SOL/USDT']\nallow_short = false\n",
            "symbols.SOL/USDT: overrides a symbol that is not traded",
        ),
        (
            "[exchange]\nsymbols = ['ETH/USDT']\n[symbols.'ETH/USDT']\nposition_fraction = 2.0\n",
            "symbols.ETH/USDT.position_fraction",
        ),
        ("[portfolio]\nmax_open_positions = -1\n", "portfolio.max_open_positions"),
    ],
)
def test_bad_config_names_key_and_file(write_config, text: str, needle: str) -> None:
    path = write_config(text)
    with pytest.raises(config.ConfigError) as err:
        config.load(path)
    assert needle in str(err.value)
    assert str(path) in str(err.value)


def test_symbols_list_legacy_symbol_and_overrides(write_config) -> None:
    legacy = config.load(write_config("[exchange]\nsymbol = 'SOL/USDT'\n"))
    assert legacy.exchange.symbols == ("SOL/USDT",) and legacy.exchange.symbol == "SOL/USDT"
    assert config.load(write_config("")).exchange.symbols == ("ETH/USDT",)
    many = config.load(
        write_config("""
        [exchange]
        symbols = ["ETH/USDT", "SOL/USDT", "XRP/USDT"]
        [strategy]
        position_fraction = 0.1
        [symbols."SOL/USDT"]
        position_fraction = 0.05
        allow_short = false
        [portfolio]
        max_open_positions = 2
    """)
    )
    assert many.exchange.symbols == ("ETH/USDT", "SOL/USDT", "XRP/USDT")
    sol, eth = many.strategy_for("SOL/USDT"), many.strategy_for("ETH/USDT")
    assert (sol.position_fraction, sol.allow_short) == (0.05, False)
    assert (eth.position_fraction, eth.allow_short) == (0.1, True)
    assert many.portfolio.max_open_positions == 2


def test_missing_and_broken_files(tmp_path) -> None:
    with pytest.raises(config.ConfigError, match="not found"):
        config.load(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[exchange\n")
    with pytest.raises(config.ConfigError, match="not valid TOML"):
        config.load(bad)


def test_cli_exits_2_on_config_error(write_config, capsys) -> None:
    path = write_config("[exchange]\nwarmup_bars = 'x'\n")
    assert main(["check", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert "exchange.warmup_bars" in err and str(path) in err


def test_check_command_ok_on_shipped_config() -> None:
    out = subprocess.run([sys.executable, "-m", "daemon", "check"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "ok" in out.stdout


def test_secret_comes_from_environment(monkeypatch) -> None:
    monkeypatch.delenv("SIGD_TEST_SECRET", raising=False)
    with pytest.raises(config.ConfigError, match="SIGD_TEST_SECRET is not set"):
        config.secret("SIGD_TEST_SECRET", "exchange.api_secret_env")
    monkeypatch.setenv("SIGD_TEST_SECRET", "s3cr3t-value")
    assert config.secret("SIGD_TEST_SECRET", "x") == "s3cr3t-value"


def test_inference_threads_must_be_positive(write_config) -> None:
    path = write_config("[models]\nthreads = 0\n")
    with pytest.raises(config.ConfigError, match="models.threads"):
        config.load(path)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"\xff\xfe[exchange]\n", "not a UTF-8 text file (byte 0xff at offset 0)"),
        (bytes(range(256)) * 4, "not a UTF-8 text file"),
        (b"\x00\x01\x02garbage = = =\n", "not valid TOML"),
    ],
)
def test_unreadable_files_exit_2_with_one_line(tmp_path, capsys, content: bytes, needle: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(content)
    assert main(["check", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert needle in err and str(path) in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_directory_as_config_exits_2(tmp_path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "daemon", "check", "-c", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2
    assert out.stderr == f"sigd: config error: {tmp_path}: is a directory, not a config file\n"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[local_exchange]\nspeed = inf\n", "local_exchange.speed: must be a finite number, got inf"),
        ("[broker]\nstarting_balance = 1e400\n", "broker.starting_balance: must be a finite number, got inf"),
        ("[exchange]\nstall_factor = nan\n", "exchange.stall_factor: must be a finite number, got nan"),
        ("[exchange]\nbackoff_max_s = -inf\n", "exchange.backoff_max_s: must be a finite number, got -inf"),
        ("[strategy]\nweights = { mtf_transformer = nan }\n", "strategy.weights.mtf_transformer: must be a finite"),
    ],
)
def test_non_finite_numbers_are_refused(write_config, text: str, needle: str) -> None:
    with pytest.raises(config.ConfigError) as err:
        config.load(write_config(text))
    assert needle in str(err.value)


def test_non_finite_allowed_only_where_a_field_says_so() -> None:
    import dataclasses

    from daemon import typedtoml

    @dataclasses.dataclass(frozen=True)
    class Section:
        limit: float = 1.0
        cap: float = dataclasses.field(default=1.0, metadata={typedtoml.ALLOW_NONFINITE: True})
        extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    assert typedtoml.build(Section, {"cap": float("inf")}, "s").cap == float("inf")
    with pytest.raises(config.ConfigError, match="s.limit: must be a finite"):
        typedtoml.build(Section, {"limit": float("inf")}, "s")
    with pytest.raises(config.ConfigError, match=r"s.extra.a\[1\]: must be a finite"):
        typedtoml.build(Section, {"extra": {"a": [1.0, float("nan")]}}, "s")


@pytest.mark.parametrize(
    "text",
    [
        "[exchange]\nsymbols = ['{big}']\n",  # a section's check() echoes it
        "[exchange]\nendpoint = '{big}'\n",  # a Literal echoes it
        "[exchange]\nwarmup_bars = '{big}'\n",  # a wrong type echoes it
        "[exchange]\n{big} = 1\n",  # an unknown key
    ],
)
def test_echoed_values_are_truncated(tmp_path, capsys, text: str) -> None:
    path = tmp_path / "big.toml"
    path.write_text(text.replace("{big}", "A" * 1_000_000))
    assert main(["check", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err) < 600 and "chars)" in err and str(path) in err, err[:600]


def test_run_refuses_bad_input_as_check_does(write_config, tmp_path) -> None:
    # A missing file and a missing model: one clean line per problem and exit 2, no traceback
    # in a JSON log line, no store created.
    missing = subprocess.run(
        [sys.executable, "-m", "daemon", "run", "-c", str(tmp_path / "missing.toml")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (
        missing.returncode == 2 and missing.stderr == f"sigd: config error: {tmp_path / 'missing.toml'}: config file not found\n"
    )
    path = write_config(f"""
        [store]
        path = "{tmp_path / "state" / "sigd.sqlite"}"
        [models]
        paths = {{ mtf_transformer = "{tmp_path / "none"}", cnn_lstm_attn = "{REPO / "models/artifacts/cnn_lstm_attn"}" }}
    """)
    run = subprocess.run(
        [sys.executable, "-m", "daemon", "run", "-c", str(path)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    check = subprocess.run(
        [sys.executable, "-m", "daemon", "check", "-c", str(path)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 2 and check.returncode == 2  # one code for the same problems
    assert "Traceback" not in run.stderr and "Traceback" not in run.stdout
    assert run.stderr.replace("sigd run:", "sigd check:") == check.stderr
    assert "models.paths.mtf_transformer: no artifact at" in run.stderr
    assert not (tmp_path / "state" / "sigd.sqlite").exists()
