"""The three teachers (Sig: 1D WRN, GAF and PI: 2D WRN): train, cache, load, run once.

A teacher is trained once per data set, split, seed, modality, architecture, image
settings and number of epochs; its best-validation checkpoint and a few early snapshots
(for early-stopped KD) are saved in one file named by a hash of those settings.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from mmkd.config import TrialConfig
from mmkd.data import DataError, Split
from mmkd.nets import build_teacher
from mmkd.train import fit

logger = logging.getLogger(__name__)

MODALITIES = ("sig", "gaf", "pi")
SNAPSHOT_FRACTIONS = (0.25, 0.5, 0.75)


@dataclass(frozen=True)
class TeacherSpec:
    """Everything that decides a teacher's weights; its hash names the cache file."""

    modality: str
    dataset: str
    split: str
    depth: int
    width: int
    epochs: int
    seed: int
    image_settings: str
    lr: float = 0.05
    weight_decay: float = 5e-4
    batch_size: int = 64
    schedule: str = "cosine"

    def key(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return f"{self.modality}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"

    def snapshot_epochs(self) -> tuple[int, ...]:
        return tuple(sorted({snapshot_epoch(self.epochs, f) for f in SNAPSHOT_FRACTIONS}))


def snapshot_epoch(epochs: int, fraction: float) -> int:
    """The (1-based) epoch whose weights stand for ``fraction`` of a teacher's training."""
    return max(1, round(fraction * epochs))


@dataclass
class TeacherOutputs:
    """A frozen teacher's outputs for a set of windows, computed once without gradient."""

    logits: torch.Tensor
    features: torch.Tensor
    feature_map: torch.Tensor
    classifier_weight: torch.Tensor


class ModalityClassifier(nn.Module):
    """Wraps a network so that it reads its own modality from a batch of all modalities."""

    def __init__(self, net: nn.Module, modality: str):
        super().__init__()
        self.net = net
        self.modality = modality

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.net(inputs[self.modality])


def _cross_entropy(output, targets, labels, progress):
    loss = nn.functional.cross_entropy(output, labels)
    return loss, {"ce": float(loss.detach())}


def train_teacher(
    spec: TeacherSpec,
    windows: torch.Tensor,
    labels: torch.Tensor,
    split: Split,
    num_classes: int,
) -> dict:
    """Train one teacher; returns the record that `save_teacher` stores."""
    torch.manual_seed(spec.seed)
    net = build_teacher(spec.modality, windows.shape[1], num_classes, spec.depth, spec.width)
    config = TrialConfig(
        lr=spec.lr,
        weight_decay=spec.weight_decay,
        batch_size=spec.batch_size,
        schedule=spec.schedule,
    )
    result = fit(
        ModalityClassifier(net, spec.modality),
        _cross_entropy,
        {spec.modality: windows},
        labels,
        split,
        config,
        spec.epochs,
        snapshot_epochs=spec.snapshot_epochs(),
        seed=spec.seed,
    )
    strip = len("net.")
    return {
        "spec": asdict(spec),
        "state": {k[strip:]: v for k, v in result.state.items()},
        "snapshots": {
            str(epoch): {k[strip:]: v for k, v in state.items()}
            for epoch, state in result.snapshots.items()
        },
        "best_val_acc": result.best_val_acc,
        "best_epoch": result.best_epoch,
        "test_acc": result.test_acc,
        "in_channels": int(windows.shape[1]),
        "num_classes": int(num_classes),
    }


def teacher_path(cache_dir: str | os.PathLike, spec: TeacherSpec) -> Path:
    return Path(cache_dir) / "teachers" / f"{spec.key()}.pt"


def save_teacher(record: dict, path: Path) -> None:
    """Write atomically: a reader never sees a half-written checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(handle)
    try:
        torch.save(record, temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


# What `train_teacher` records; a cached file without all of it is not a teacher record.
RECORD_KEYS = frozenset(
    {
        "spec",
        "state",
        "snapshots",
        "best_val_acc",
        "best_epoch",
        "test_acc",
        "in_channels",
        "num_classes",
    }
)


def load_teacher_record(path: Path, spec: TeacherSpec | None = None) -> dict | None:
    """The cached record, or None when it is missing, unreadable, not a teacher record or
    (given ``spec``) the record of another teacher (then it is retrained). A folder at
    ``path`` is refused with a `DataError` (a file could not be written there)."""
    if not path.exists():
        return None
    if path.is_dir():
        raise DataError(f"{path}: a folder stands where this teacher's cache file belongs")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file: retrain rather than fail
        logger.warning("teacher cache %s is unreadable (%s); training it again", path, error)
        return None
    missing = RECORD_KEYS - set(record) if isinstance(record, dict) else RECORD_KEYS
    if missing:
        logger.warning(
            "teacher cache %s is no teacher record (no %s); training it again",
            path,
            ", ".join(sorted(missing)),
        )
        return None
    if spec is not None and record["spec"] != asdict(spec):
        logger.warning("teacher cache %s holds another teacher; training it again", path)
        return None
    return record


def build_from_record(record: dict, snapshot: float = 1.0) -> nn.Module:
    """A frozen teacher network from a record.

    ``snapshot`` 1.0 is the best-validation checkpoint; 0.25, 0.5 and 0.75 are the weights
    after that share of the teacher's epochs (early-stopped teachers).
    """
    spec = record["spec"]
    net = build_teacher(
        spec["modality"],
        record["in_channels"],
        record["num_classes"],
        spec["depth"],
        spec["width"],
    )
    if snapshot == 1.0:
        state = record["state"]
    else:
        state = record["snapshots"][str(snapshot_epoch(spec["epochs"], snapshot))]
    net.load_state_dict(state)
    net.eval()
    for parameter in net.parameters():
        parameter.requires_grad_(False)
    return net


@torch.no_grad()
def teacher_outputs(
    net: nn.Module, windows: torch.Tensor, batch_size: int = 256
) -> TeacherOutputs:
    """Run a frozen teacher over ``windows`` once, keeping logits and its last feature map.

    ``windows`` may be float16 (the caches' type); each batch is converted on its own.
    """
    maps, logits = [], []
    for start in range(0, len(windows), batch_size):
        feature_map = net.forward_features(windows[start : start + batch_size].float())
        maps.append(feature_map)
        pooled = feature_map.flatten(2).mean(dim=2)
        logits.append(net.classifier(pooled))
    feature_map = torch.cat(maps)
    return TeacherOutputs(
        logits=torch.cat(logits),
        features=feature_map.flatten(2).mean(dim=2),
        feature_map=feature_map,
        classifier_weight=net.classifier.weight.detach().clone(),
    )
