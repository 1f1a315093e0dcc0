"""Model artifacts: a directory with `model.safetensors` and `artifact.json`. No pickle.

The JSON holds everything but the weights: model name and config, feature spec (version,
feature names, scaler parameters), target spec, class convention, threshold and its validation
Sharpe, training info, history, sample counts, the test evaluation and a fingerprint of the
training data, plus the sha256 and shape of every weight tensor. Loading rebuilds the model
from the JSON alone, checks versions, the weights' hash and every tensor's shape, and refuses a
mismatch or a corrupt file with ArtifactError. Writing is atomic: a temporary directory beside
the target is filled, synced and renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from models import registry
from models.features import FeatureSpec

FORMAT = "sigd-artifact"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
META = "artifact.json"
CLASSES = {"0": "SHORT", "1": "FLAT", "2": "LONG"}


class ArtifactError(ValueError):
    """An artifact that cannot be used; the message names the directory and the problem."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_artifact(out_dir: Path | str, model: nn.Module, name: str, config: Mapping[str, Any], meta: Mapping[str, Any]) -> Path:
    """Write weights + JSON atomically into out_dir (replacing it); return the directory."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
        save_file(tensors, str(tmp / WEIGHTS))
        digest = _sha256(tmp / WEIGHTS)
        doc = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            **meta,
            "model": {"name": name, "config": dict(config)},
            "classes": CLASSES,
            "version": f"{name}-{digest[:12]}",
            "weights": {"file": WEIGHTS, "sha256": digest, "tensors": {k: list(v.shape) for k, v in tensors.items()}},
        }
        with open(tmp / META, "w") as fh:
            json.dump(doc, fh, indent=1, sort_keys=True, allow_nan=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp / WEIGHTS, 0o644)
        os.chmod(tmp / META, 0o644)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; artifacts are read by the daemon's user
        _fsync_dir(tmp)
        old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
        if out_dir.exists():
            os.rename(out_dir, old)
        os.rename(tmp, out_dir)
        shutil.rmtree(old, ignore_errors=True)
        _fsync_dir(out_dir.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def read_meta(art_dir: Path | str) -> dict[str, Any]:
    """The artifact's JSON, checked for format and versions."""
    path = Path(art_dir) / META
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"{art_dir}: no {META} (not a model artifact directory)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: corrupt JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ArtifactError(f"{path}: not a {FORMAT} file")
    if doc.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{path}: format_version {doc.get('format_version')!r}, this sigd reads {FORMAT_VERSION}")
    for key in ("model", "features", "target", "threshold", "weights"):
        if key not in doc:
            raise ArtifactError(f"{path}: missing key {key!r}")
    return doc


def hold_bars(meta: Mapping[str, Any]) -> int:
    """The threshold rule's holding period in bars (artifacts written before it existed: 1 = every bar)."""
    hold = meta["threshold"].get("hold_bars", 1)
    if not isinstance(hold, int) or isinstance(hold, bool) or hold < 1:
        raise ArtifactError(f"threshold.hold_bars must be an int >= 1, got {hold!r}")
    return hold


def _check_shapes(art_dir: Path, model: nn.Module, tensors: Mapping[str, torch.Tensor]) -> None:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in tensors.items()}
    missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    wrong = [f"{k}: file {got[k]} != model {expected[k]}" for k in expected if k in got and got[k] != expected[k]]
    if missing or extra or wrong:
        raise ArtifactError(
            f"{art_dir}: weights do not match the config: missing {missing[:5]}, unexpected {extra[:5]}, wrong shape {wrong[:5]}"
        )


def load_artifact(art_dir: Path | str, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any], FeatureSpec]:
    """Rebuild model (eval mode, on device), JSON and FeatureSpec; ArtifactError on any mismatch."""
    art_dir = Path(art_dir)
    doc = read_meta(art_dir)
    weights = art_dir / doc["weights"]["file"]
    if not weights.is_file():
        raise ArtifactError(f"{art_dir}: weights file {weights.name} missing")
    if _sha256(weights) != doc["weights"]["sha256"]:
        raise ArtifactError(f"{weights}: sha256 differs from {META} (corrupt or replaced weights)")
    try:
        spec = FeatureSpec.from_dict(doc["features"])
        model = registry.build(doc["model"]["name"], doc["model"]["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{art_dir}: cannot rebuild the model from {META}: {exc}") from exc
    try:
        tensors = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(f"{weights}: unreadable safetensors: {exc}") from exc
    _check_shapes(art_dir, model, tensors)
    model.load_state_dict(tensors, strict=True)
    return model.to(device).eval(), doc, spec
