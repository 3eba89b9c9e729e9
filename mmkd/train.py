"""fit(): the training loop shared by teachers and students.

Each epoch: train on shuffled batches, validate, keep the best-validation checkpoint
(early-stopped KD, ESKD: the checkpoint that is returned is the best one, not the last),
then ask the per-epoch callback whether to go on. The callback is the seam to any tuning
machinery: this module knows nothing of it.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from mmkd.config import TrialConfig
from mmkd.data import Split

logger = logging.getLogger(__name__)

STOP = "stop"


@dataclass
class EpochReport:
    """What one epoch measured; ``best_val_acc`` is the best so far, this epoch included."""

    epoch: int
    train_loss: float
    val_acc: float
    best_val_acc: float
    parts: dict[str, float]


@dataclass
class FitResult:
    """The outcome of `fit`.

    ``stop_reason``: "epochs" (all epochs ran), "patience" (no improvement for
    ``patience`` epochs), "callback" (the callback asked to stop, e.g. a pruner) or
    "nonfinite" (the loss became NaN or infinite; ``state`` is then the best checkpoint
    before that, or None when no epoch finished).
    """

    best_val_acc: float
    best_epoch: int
    test_acc: float
    epochs_run: int
    stop_reason: str
    state: dict | None
    history: list[EpochReport] = field(default_factory=list)
    snapshots: dict[int, dict] = field(default_factory=dict)


def make_optimizer(model: nn.Module, config: TrialConfig, epochs: int):
    """Optimiser and per-epoch learning-rate schedule from a config."""
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(
            params,
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            nesterov=config.momentum > 0,
        )
    elif config.optimizer == "adam":
        optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    else:
        optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)

    if config.schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
    elif config.schedule == "step":
        # Step decay at 50% and 75% of the epochs, by 10 each time.
        milestones = [max(1, epochs // 2), max(1, (3 * epochs) // 4)]
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.1)
    else:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    return optimizer, scheduler


def _logits(output) -> torch.Tensor:
    return output if isinstance(output, torch.Tensor) else output.logits


def _batch(inputs: dict[str, torch.Tensor], index: torch.Tensor) -> dict[str, torch.Tensor]:
    """Rows ``index`` of every modality, as float32 (caches may hold float16)."""
    return {name: tensor[index].float() for name, tensor in inputs.items()}


@torch.no_grad()
def accuracy(
    model: nn.Module,
    inputs: dict[str, torch.Tensor],
    labels: torch.Tensor,
    index: torch.Tensor,
    batch_size: int = 256,
) -> float:
    """Share of windows ``index`` that ``model`` classifies correctly (0 for no windows)."""
    if len(index) == 0:
        return 0.0
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(index), batch_size):
        chunk = index[start : start + batch_size]
        predicted = _logits(model(_batch(inputs, chunk))).argmax(dim=1)
        correct += int((predicted == labels[chunk]).sum())
    model.train(was_training)
    return correct / len(index)


def fit(
    model: nn.Module,
    loss_fn: Callable,
    inputs: dict[str, torch.Tensor],
    labels: torch.Tensor,
    split: Split,
    config: TrialConfig,
    epochs: int,
    targets: dict[str, torch.Tensor] | None = None,
    patience: int | None = None,
    callback: Callable[[EpochReport], str | None] | None = None,
    snapshot_epochs: tuple[int, ...] = (),
    seed: int = 0,
) -> FitResult:
    """Train ``model`` and return its best-validation checkpoint with its test accuracy.

    ``inputs`` maps a modality to all windows of the data set (one tensor each);
    ``targets`` maps a name to one row per *training* window, in the order of
    ``split.train``. ``loss_fn(output, batch_targets, batch_labels, progress)`` returns
    ``(loss, parts)``; ``model(batch_inputs)`` returns logits or an object with
    ``.logits``. ``snapshot_epochs`` (1-based) are copied into ``result.snapshots``.
    Extra trainable parameters of ``loss_fn`` (when it is a module) are trained too.
    """
    torch.manual_seed(seed)
    targets = targets or {}
    train_index = torch.as_tensor(split.train)
    val_index = torch.as_tensor(split.val)
    test_index = torch.as_tensor(split.test)

    trainable = nn.ModuleList([model, loss_fn]) if isinstance(loss_fn, nn.Module) else model
    optimizer, scheduler = make_optimizer(trainable, config, epochs)
    generator = torch.Generator().manual_seed(seed)

    best_val, best_epoch, best_state = -1.0, 0, None
    history: list[EpochReport] = []
    snapshots: dict[int, dict] = {}
    stop_reason = "epochs"
    model.train()

    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(train_index), generator=generator)
        total, count, parts_sum = 0.0, 0, {}
        for start in range(0, len(order), config.batch_size):
            position = order[start : start + config.batch_size]
            index = train_index[position]
            batch_targets = {name: value[position] for name, value in targets.items()}
            progress = (epoch - 1 + start / len(order)) / epochs
            output = model(_batch(inputs, index))
            loss, parts = loss_fn(output, batch_targets, labels[index], progress)
            if not math.isfinite(loss.item()):
                stop_reason = "nonfinite"
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip > 0:
                nn.utils.clip_grad_norm_(trainable.parameters(), config.grad_clip)
            optimizer.step()
            total += loss.item() * len(index)
            count += len(index)
            for name, value in parts.items():
                parts_sum[name] = parts_sum.get(name, 0.0) + value * len(index)
        if stop_reason == "nonfinite":
            logger.warning("loss became non-finite in epoch %d; stopping", epoch)
            break
        scheduler.step()

        val_acc = accuracy(model, inputs, labels, val_index)
        if val_acc > best_val:
            best_val, best_epoch = val_acc, epoch
            best_state = copy.deepcopy(model.state_dict())
        if epoch in snapshot_epochs:
            snapshots[epoch] = copy.deepcopy(model.state_dict())
        report = EpochReport(
            epoch=epoch,
            train_loss=total / max(count, 1),
            val_acc=val_acc,
            best_val_acc=best_val,
            parts={name: value / max(count, 1) for name, value in parts_sum.items()},
        )
        history.append(report)

        if callback is not None and callback(report) == STOP:
            stop_reason = "callback"
            break
        if patience is not None and epoch - best_epoch >= patience:
            stop_reason = "patience"
            break

    test_acc = 0.0
    if best_state is not None:
        model.load_state_dict(best_state)
        test_acc = accuracy(model, inputs, labels, test_index)
    return FitResult(
        best_val_acc=max(best_val, 0.0),
        best_epoch=best_epoch,
        test_acc=test_acc,
        epochs_run=len(history),
        stop_reason=stop_reason,
        state=best_state,
        history=history,
        snapshots=snapshots,
    )
