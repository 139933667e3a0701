"""Training of one LOSO fold: ``train_fold(config, train, test, seed, device) -> FoldResult``.

Defaults (``mer_model.config.TRAINING_DEFAULTS``): Adam, lr 1e-3, weight decay 1e-4, batch 32, 60 epochs:
this project's choices, the paper gives no optimiser, learning rate, weight decay, batch size or epochs.
The number of epochs is fixed in advance and the *final* epoch's model predicts the left-out subject:
nothing is selected on the test subject. The training set is the fold's training clips plus their
``augment`` views (crop-size re-detections, same labels and AUs); ``test.augment`` is never read.

After the last epoch, BatchNorm statistics are recomputed on the training set with the final weights
(``torch.optim.swa_utils.update_bn``), so evaluation does not depend on how far the running averages got.

Full-batch tensors on the device and index slicing per mini-batch: no DataLoader, no worker processes.
Randomness comes only from ``seed``: parameters are initialised under a forked, seeded torch RNG (the
caller's global RNG is untouched) and mini-batches are shuffled with a local ``torch.Generator``. Threads
are left as the caller set them (the orchestrator decides).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch.optim.swa_utils import update_bn

from mer_model.config import validate_config
from mer_model.errors import InputError
from mer_model.losses import total_loss
from mer_model.models import build_model


class FoldData(Protocol):
    """What train_fold reads from a dataset (``mer_model.data.LandmarkDataset`` fits)."""

    landmarks: np.ndarray  # (N, 3, 68, 2)
    labels: np.ndarray  # (N,)
    aus: np.ndarray  # (N, num_aus)
    augment: np.ndarray | None  # (N, K, 3, 68, 2)
    # optional: au_labelled (N,) bool, the clips with AU labels (absent or None: all; training_tensors)


@dataclass
class FoldResult:
    """Outcome of one LOSO fold (contract in docs/architecture.md)."""

    y_true: np.ndarray
    y_pred: np.ndarray
    probs: np.ndarray
    aau_layers: list[int]
    aau_weights: list[float]
    lam: dict[str, np.ndarray]
    loss_curve: list[float]
    epochs: int
    seed: int
    n_train: int
    n_test: int
    train_seconds: float = field(default=0.0)
    # the AAU layer weights at initialisation and after each epoch: (epochs + 1) rows of len(aau_layers);
    # the last row equals aau_weights
    aau_weight_curve: list[list[float]] = field(default_factory=list)
    # training clips (augment views not counted) whose AU labels supervised the AU losses; -1: not recorded
    n_au_train: int = -1
    # the final model's weights (CPU tensors) when train_fold(..., keep_model=True); not part of to_dict()
    state_dict: dict[str, torch.Tensor] | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (arrays as nested lists)."""
        return {
            "y_true": self.y_true.tolist(),
            "y_pred": self.y_pred.tolist(),
            "probs": self.probs.tolist(),
            "aau_layers": list(self.aau_layers),
            "aau_weights": list(self.aau_weights),
            "lam": {k: v.tolist() for k, v in self.lam.items()},
            "loss_curve": list(self.loss_curve),
            "epochs": self.epochs,
            "seed": self.seed,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "train_seconds": self.train_seconds,
            "aau_weight_curve": [list(row) for row in self.aau_weight_curve],
            "n_au_train": self.n_au_train,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FoldResult:
        return cls(
            y_true=np.asarray(d["y_true"], dtype=np.int64),
            y_pred=np.asarray(d["y_pred"], dtype=np.int64),
            probs=_probs(d).reshape(len(d["y_true"]), -1 if d["y_true"] else 0),
            aau_layers=[int(r) for r in d["aau_layers"]],
            aau_weights=[float(w) for w in d["aau_weights"]],
            lam={k: np.asarray(v, dtype=np.float32) for k, v in d["lam"].items()},
            loss_curve=[float(x) for x in d["loss_curve"]],
            epochs=int(d["epochs"]),
            seed=int(d["seed"]),
            n_train=int(d["n_train"]),
            n_test=int(d["n_test"]),
            train_seconds=float(d.get("train_seconds", 0.0)),
            aau_weight_curve=[[float(w) for w in row] for row in d.get("aau_weight_curve", [])],
            n_au_train=int(d.get("n_au_train", -1)),
        )


def _probs(d: Mapping[str, Any]) -> np.ndarray:
    return np.asarray(d["probs"], dtype=np.float64)


@contextlib.contextmanager
def deterministic(device: torch.device) -> Iterator[None]:
    """Deterministic kernels for the duration of one fold, restoring the caller's settings after."""
    prev = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_bench = torch.backends.cudnn.benchmark
    prev_fill = torch.utils.deterministic.fill_uninitialized_memory
    if device.type == "cuda":
        # cuBLAS needs this before its first use to be deterministic; harmless when already set.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # warn_only: an op without a deterministic CUDA kernel must not fail every fold on a GPU node
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    # Deterministic mode also fills every new tensor with NaN before a kernel overwrites it (a guard for
    # kernels that read uninitialised memory): ~700 fills per training step. Results are the same without
    # them (tests/test_model_train_fast.py); the CPU time they cost is in benchmarks/results/throughput.md.
    torch.utils.deterministic.fill_uninitialized_memory = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev, warn_only=prev_warn)
        torch.backends.cudnn.benchmark = prev_bench
        torch.utils.deterministic.fill_uninitialized_memory = prev_fill


def resolve_sizes(cfg: dict[str, Any], train: FoldData, test: FoldData) -> dict[str, Any]:
    """Fill num_classes / num_aus from the data when the config leaves them None; check them otherwise."""
    labels = np.concatenate([np.asarray(train.labels), np.asarray(test.labels)])
    names = getattr(train, "class_names", None)
    inferred_c = len(names) if names else int(labels.max()) + 1
    if cfg["num_classes"] is None:
        cfg["num_classes"] = max(inferred_c, 2)
    if labels.min() < 0 or labels.max() >= cfg["num_classes"]:
        raise InputError(
            f"config: num_classes: got {cfg['num_classes']}; "
            f"allowed: more than the largest label {labels.max()}"
        )
    n_aus = np.asarray(train.aus).shape[1]
    if cfg["num_aus"] is None:
        cfg["num_aus"] = n_aus
    if cfg["au_loss"] != "none" and cfg["num_aus"] != n_aus:
        raise InputError(
            f"config: num_aus: got {cfg['num_aus']}; allowed: {n_aus} (the dataset's AU columns)"
        )
    return cfg


def au_labelled(data: FoldData) -> np.ndarray | None:
    """(N,) bool: the clips of ``data`` with AU labels, or None when every clip has them (or the object
    does not say: plain test doubles)."""
    mask = getattr(data, "au_labelled", None)
    if mask is None or bool(np.all(mask)):
        return None
    return np.asarray(mask, dtype=bool)


def training_tensors(
    train: FoldData, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Training clips plus their augment views as one set: x (M, 3, 68, 2), y (M,), aus (M, A), and the
    AU-label mask (M,) float in {0, 1} (None when every clip is labelled: the loss then runs exactly as
    before masks existed)."""
    x = np.asarray(train.landmarks, dtype=np.float32)
    y = np.asarray(train.labels, dtype=np.int64)
    a = np.asarray(train.aus, dtype=np.float32)
    m = au_labelled(train)
    aug = getattr(train, "augment", None)
    if aug is not None and aug.shape[1] > 0:
        k = aug.shape[1]
        x = np.concatenate([x, np.asarray(aug, dtype=np.float32).reshape(-1, *x.shape[1:])])
        y = np.concatenate([y, np.repeat(y, k)])
        a = np.concatenate([a, np.repeat(a, k, axis=0)])
        m = None if m is None else np.concatenate([m, np.repeat(m, k)])  # a view has its clip's labels
    mask = None if m is None else torch.from_numpy(m.astype(np.float32)).to(device)
    return (torch.from_numpy(x).to(device), torch.from_numpy(y).to(device), torch.from_numpy(a).to(device),
            mask)


def check_au_supervision(cfg: Mapping[str, Any], train: FoldData) -> int:
    """The number of training clips with AU labels; an AU-loss config with none is refused (one line)."""
    mask = au_labelled(train)
    n = len(train.labels) if mask is None else int(mask.sum())
    if cfg["au_loss"] != "none" and n == 0:
        raise InputError(f"config: au_loss: {cfg['au_loss']!r} but no training clip has AU labels (e.g. "
                         "SMIC); allowed: au_loss 'none', or training data with AU labels")
    return n


def shuffled_batches(n: int, batch_size: int, gen: torch.Generator) -> list[torch.Tensor]:
    """Shuffled index batches; a trailing batch of one joins the previous (BatchNorm needs >= 2)."""
    parts = list(torch.randperm(n, generator=gen).split(batch_size))
    if len(parts) > 1 and len(parts[-1]) == 1:
        parts[-2:] = [torch.cat(parts[-2:])]
    return parts


def autocast(cfg: Mapping[str, Any], device: torch.device) -> contextlib.AbstractContextManager:
    """The training forward + loss under ``train.precision``: bf16 autocast, or nothing for fp32.

    Autocast runs matrix products (linear, bmm, conv) in bfloat16 and keeps BatchNorm, softmax and the
    losses in float32; weights, gradients and the optimiser stay float32 (they are never cast in place).
    Evaluation (``finish_fold``) always runs in float32. bf16 is our option, not the paper's.
    """
    if cfg["precision"] != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def _optimizer(cfg: dict[str, Any], params: Any) -> torch.optim.Optimizer:
    """The configured optimiser with ``fused=True``: one kernel over every parameter per step.

    Why: on a CPU torch's default is the per-parameter loop (~15 small ops per tensor, ~70 tensors); the
    fused kernel computes the same update (same equations, float rounding aside) in one pass: 1.00-1.11x per
    training step in CPU time on the 2-core box (benchmarks/results/throughput.md).
    """
    kw = dict(lr=cfg["lr"], weight_decay=cfg["weight_decay"], fused=True)
    if cfg["optimizer"] == "adam":
        return torch.optim.Adam(params, **kw)
    if cfg["optimizer"] == "adamw":
        return torch.optim.AdamW(params, **kw)
    return torch.optim.SGD(params, momentum=0.9, **kw)


def aau_shares(model: torch.nn.Module) -> list[float]:
    """The model's AAU layer weights now (``model.aau_weights()``) as floats: one row of the trajectory."""
    with torch.no_grad():
        return [float(w) for w in model.aau_weights().cpu().tolist()]


def train_fold(
    config: Mapping[str, Any],
    train: FoldData,
    test: FoldData,
    seed: int = 0,
    device: str | torch.device = "cpu",
    keep_model: bool = False,
) -> FoldResult:
    """Train on ``train`` for the configured epochs, predict ``test`` with the final model.

    Args:
        config: flat config dict (model + training keys), validated by ``validate_config``.
        train, test: objects with ``.landmarks (N, 3, 68, 2)``, ``.labels (N,)``, ``.aus (N, A)``,
            ``.augment (N, K, 3, 68, 2) | None``. Only ``train.augment`` is used.
        seed: the only source of randomness; same seed + device + data -> identical result.
        device: torch device for the whole fold.
        keep_model: also return the final model's ``state_dict`` (CPU copies, after the BatchNorm
            recomputation: the weights that made the predictions) in ``FoldResult.state_dict``; the
            result is otherwise the same.
    """
    t0 = time.perf_counter()
    dev = torch.device(device)
    cfg = resolve_sizes(validate_config(config), train, test)
    x, y, a, m = training_tensors(train, dev)
    n_au = check_au_supervision(cfg, train)
    if len(x) < 2:
        raise InputError(f"train: landmarks: got {len(x)} training samples; allowed: at least 2")

    cuda_ids = (
        [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
    )
    with deterministic(dev), torch.random.fork_rng(devices=cuda_ids):
        torch.manual_seed(seed)
        model = build_model(cfg).to(dev)
        opt = _optimizer(cfg, model.parameters())
        gen = torch.Generator().manual_seed(seed)
        aau_w = getattr(model, "aau_w", None)
        curve, w_curve = [], [aau_shares(model)]
        model.train()
        for _ in range(cfg["epochs"]):
            total = torch.zeros((), device=dev)
            for idx in shuffled_batches(len(x), cfg["batch_size"], gen):
                idx = idx.to(dev)
                with autocast(cfg, dev):
                    logits, au = model(x[idx], return_aux=True)
                    loss = total_loss(logits, y[idx], au, a[idx], aau_w, cfg["beta"],  # Eq. (12)
                                      aau_weighting=cfg["aau_weighting"],
                                      au_mask=None if m is None else m[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total = total + loss.detach() * len(idx)
            curve.append(float(total / len(x)))  # one sync per epoch, not per step
            w_curve.append(aau_shares(model))

        result = finish_fold(model, x, test, batch_size=cfg["batch_size"], curve=curve, epochs=cfg["epochs"],
                             seed=seed, n_train=len(train.labels))
        result.aau_weight_curve = w_curve
        result.n_au_train = n_au
        if keep_model:
            result.state_dict = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    result.train_seconds = time.perf_counter() - t0
    return result


def finish_fold(
    model: torch.nn.Module,
    x_train: torch.Tensor,
    test: FoldData,
    *,
    batch_size: int,
    curve: list[float],
    epochs: int,
    seed: int,
    n_train: int,
) -> FoldResult:
    """The end of every fold, trained alone (``train_fold``) or in a packed group (``batched``).

    BatchNorm statistics of the final weights are recomputed from the training set only (fixed order, no
    test data): the running averages lag far behind when training is short (their initial variance of 1
    decays as 0.9^steps while the normalised landmark channels vary by ~1e-4), which made eval-mode
    predictions collapse to one class after tens of steps even at near-zero training loss. Then the final
    model predicts the left-out subject; nothing is selected on it.
    """
    dev = x_train.device
    update_bn([x_train[i : i + batch_size] for i in range(0, len(x_train), batch_size)], model)
    model.eval()
    x_test = torch.from_numpy(np.asarray(test.landmarks, dtype=np.float32)).to(dev)
    with torch.no_grad():
        probs = torch.softmax(model(x_test), dim=1).cpu().numpy().astype(np.float64)
        lam = {k: v.detach().cpu().numpy().copy() for k, v in model.lam_matrices().items()}
    return FoldResult(
        y_true=np.asarray(test.labels, dtype=np.int64).copy(),
        y_pred=probs.argmax(axis=1).astype(np.int64),
        probs=probs,
        aau_layers=list(model.au_layers),
        aau_weights=aau_shares(model),
        lam=lam,
        loss_curve=curve,
        epochs=epochs,
        seed=int(seed),
        n_train=int(n_train),
        n_test=int(len(test.labels)),
    )
