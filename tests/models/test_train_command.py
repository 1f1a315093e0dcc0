"""`sigd train` as a user runs it: the flags become the TrainSpec the artifact keeps."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.pipeline_builders import write_market


def _sigd_train(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "daemon", "train", *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_sigd_train_builds_the_spec_from_its_flags(tmp_path: Path) -> None:
    market = write_market(tmp_path / "tape", n_1m=1500)
    out = tmp_path / "art"
    res = _sigd_train(
        "--model",
        "tcn",
        "--preset",
        "tiny",
        "--data",
        str(market),
        "--epochs",
        "2",
        "--max-batches",
        "2",
        "--scheduler",
        "onecycle",
        "--jitter",
        "0.01",
        "--scaling",
        "0.02",
        "--seed",
        "4",
        "--device",
        "cpu",
        "--out",
        str(out),
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "tcn: test split" in res.stdout and f"artifact {out}" in res.stdout
    spec = json.loads((out / "artifact.json").read_text())["train_spec"]
    assert (spec["model"], spec["scheduler"], spec["jitter"], spec["scaling"], spec["seed"]) == ("tcn", "onecycle", 0.01, 0.02, 4)
    assert spec["data_dirs"] == [str(market)] and spec["epochs"] == 2
    lr = json.loads((out / "history.json").read_text())["lr"]
    assert lr[0] < 1e-3  # OneCycle starts below its peak


def test_sigd_train_refuses_an_impossible_flag_naming_it(tmp_path: Path) -> None:
    # Checked at parse time now: a usage error (exit 2) naming the flag, before anything loads.
    res = _sigd_train("--model", "gru", "--preset", "tiny", "--jitter", "2", "--out", str(tmp_path / "x"))
    assert res.returncode == 2 and "argument --jitter: must be >= 0 and < 1, got 2" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    res = _sigd_train("--model", "nope", "--preset", "tiny", "--out", str(tmp_path / "y"))
    assert res.returncode == 2 and "argument --model: unknown model family 'nope'; known: mtf_transformer" in res.stderr


def test_sigd_train_refuses_a_bad_device_or_date_in_one_line(tmp_path: Path) -> None:
    res = _sigd_train("--model", "tcn", "--preset", "tiny", "--device", "tpu", "--out", str(tmp_path / "x"))
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert "device 'tpu': not a torch device" in res.stderr
    res = _sigd_train("--model", "tcn", "--preset", "tiny", "--from", "2025-13-01", "--out", str(tmp_path / "y"))
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]  # a usage error, at parse time
    assert "argument --from: '2025-13-01' is not an ISO 8601 instant" in res.stderr


def test_sigd_train_on_cuda_without_a_gpu_says_so(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: --device cuda is valid here")
    res = _sigd_train("--model", "tcn", "--preset", "tiny", "--device", "cuda", "--out", str(tmp_path / "x"))
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert "device 'cuda': no CUDA GPU is available" in res.stderr


def test_sigd_train_refuses_an_unwritable_out_before_training(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")  # a file where the artifact's parent folder should be
    res = _sigd_train("--model", "tcn", "--preset", "tiny", "--out", str(blocker / "art"))
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert f"--out {blocker / 'art'}: cannot create {blocker}" in res.stderr
    assert "epoch" not in res.stderr  # refused before any training
