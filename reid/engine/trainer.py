"""The one trainer: epoch loop, schedule, AMP, checkpoints, resume, periodic evaluation, logs."""
from __future__ import annotations

import json
import math
import os
import random
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from reid.atomic_io import atomic_write_text
from reid.config import Config, save_config
from reid.data import build_dataset, build_train_loader
from reid.data.datasets.base import ReidDataset
from reid.losses import build_losses
from reid.models import build_model
from reid.models.checkpointing import checkpoint_modules
from reid.registry import ConfigError

from .checkpoint import CheckpointError, load_checkpoint, model_state, save_checkpoint, to_plain
from .evaluator import Evaluator, check_draws, format_metrics
from .gather import convert_sync_bn, gather_batch, gather_outputs
from .guards import LossWatch, check_run_paths, load_model_state, non_finite_loss
from .host_memory import keep_freed_host_memory
from .interrupt import SigintStop, TrainingInterrupted, rng_state, set_rng_state
from .optim import build_optimizer
from .runlog import Scalars, setup_logger
from .schedule import lr_factor, set_lr


def resolve_device(spec: str) -> torch.device:
    """``auto`` picks CUDA when available; ``cuda``/``cuda:N``/``cpu`` are taken as given."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device '{spec}' requested but CUDA is not available; use device=cpu")
    try:
        return torch.device(spec)
    except RuntimeError:
        raise ConfigError(f"device '{spec}' is not a valid torch device (auto, cpu, cuda, cuda:N)") from None


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU runs are then reproducible)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``train.amp`` (None: full precision)."""
    if mode == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    if mode == "off":
        return None
    if mode in ("bf16", "fp16"):
        return torch.bfloat16 if mode == "bf16" else torch.float16
    raise ConfigError(f"train.amp must be auto, off, bf16 or fp16, got '{mode}'")


def autocast(device: torch.device, dtype: torch.dtype | None):
    """The forward pass's autocast context (a no-op for full precision)."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def backward_and_step(total: torch.Tensor, optimizer: torch.optim.Optimizer,
                      scaler: torch.amp.GradScaler | None = None,
                      parameters: Any = None, grad_clip: float = 0.0) -> None:
    """zero_grad, backward (loss-scaled with ``scaler``), gradient clipping of ``parameters`` when
    ``grad_clip`` > 0, optimiser step: the update of one training step."""
    optimizer.zero_grad(set_to_none=True)
    if scaler:
        scaler.scale(total).backward()
        scaler.unscale_(optimizer)
    else:
        total.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(parameters, float(grad_clip))
    if scaler:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()


DTYPES = {"float32": torch.float32, "float64": torch.float64}


class _CastInput(torch.nn.Module):
    """Runs ``model`` (float64) on float32 inputs and returns float32 outputs (evaluation)."""

    def __init__(self, model: torch.nn.Module, dtype: torch.dtype):
        super().__init__()
        self.model, self.dtype = model, dtype

    def forward(self, x: torch.Tensor) -> Any:
        out = self.model(x.to(self.dtype))
        if isinstance(out, dict):
            return {k: v.float() if isinstance(v, torch.Tensor) and v.is_floating_point() else v
                    for k, v in out.items()}
        return out.float()


class Trainer:
    """Trains ``cfg.model`` on ``cfg.dataset`` and evaluates it.

    Output folder (``cfg.output_dir``): ``config.yaml`` (resolved), ``log.txt``, ``tb/`` TensorBoard
    events, ``checkpoints/last.pth`` and ``best.pth`` (atomic), ``metrics.json``.
    """

    def __init__(self, cfg: Config, resume: str | None = None, rank: int = 0, world_size: int = 1):
        check_run_paths(cfg, resume)  # before any work: folders writable, checkpoint to resume present
        self.cfg = cfg
        self.rank, self.world_size = rank, world_size
        self.is_main = rank == 0
        self.out = Path(cfg.output_dir)
        self.log = setup_logger(self.out, rank)
        if self.is_main:
            save_config(cfg, self.out / "config.yaml")
        seed_everything(int(cfg.seed))
        self.device = resolve_device(cfg.device)
        if self.device.type == "cpu":
            keep_freed_host_memory()
        self.distributed = world_size > 1 and dist.is_available() and dist.is_initialized()
        # Under DDP, each node's local rank 0 builds the data set and the image store (cached on
        # disk) while the other ranks wait; they then read the cache.
        first = int(os.environ.get("LOCAL_RANK", rank)) == 0
        if self.distributed and not first:
            dist.barrier()
        self.dataset = build_dataset(cfg, verbose=False)
        check_draws(self.dataset)  # a test protocol that cannot be evaluated fails before training
        if self.is_main:
            self.log.info(self.dataset.summary())
        if cfg.train.dtype not in DTYPES:
            raise ConfigError(f"train.dtype must be one of {sorted(DTYPES)}, got '{cfg.train.dtype}'")
        self.dtype = DTYPES[cfg.train.dtype]
        self.model = build_model(cfg.model, self.dataset.num_train_ids,
                                 input_size=cfg.input.size).to(self.device, self.dtype)
        checkpoint_modules(self.model, cfg.train.checkpoint_modules)
        if self.distributed and cfg.train.sync_bn:
            self.model = convert_sync_bn(self.model, self.device)
        if cfg.train.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.losses = build_losses(cfg.losses).to(self.device)
        self.loader = build_train_loader(cfg, self.dataset, self.device, rank=rank, world_size=world_size)
        if self.distributed and first:
            dist.barrier()
        self.optimizer = build_optimizer(cfg.optimizer, self.model)
        self.amp = amp_dtype(cfg.train.amp, self.device)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp == torch.float16 else None
        self.gather = self.distributed and bool(cfg.train.gather_outputs)
        self.ddp: torch.nn.Module | None = None
        if self.distributed:  # self.model stays the plain module (checkpoints, evaluation)
            ids = [self.device.index] if self.device.type == "cuda" and self.device.index is not None else None
            self.ddp = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=ids, find_unused_parameters=bool(cfg.train.find_unused_parameters))
        wrapped = self.ddp if self.ddp is not None else self.model
        self.forward_model = torch.compile(wrapped) if cfg.train.compile else wrapped
        self.evaluator = Evaluator(cfg, self.dataset, self.device)
        self.val_evaluator = self._validation_evaluator()
        self.scalars = Scalars(self.out / "tb", rank)
        self.start_epoch = 0
        self.best: dict[str, Any] = {"mAP": -1.0, "epoch": -1}
        self.history: list[dict[str, Any]] = []
        self.before: dict[str, float] | None = None
        self.loss_watch = LossWatch(self.log)
        if resume:
            self.load(resume)

    # ---------------------------------------------------------------------------- checkpoints

    #: Ctrl-C handler while ``fit`` runs (None otherwise); see :mod:`reid.engine.interrupt`.
    _sigint: SigintStop | None = None
    #: Where a mid-epoch checkpoint stopped: {epoch, iteration, sums, rng}; consumed by train_epoch.
    _partial: dict[str, Any] | None = None

    def state(self, epoch: int, partial: dict[str, Any] | None = None) -> dict[str, Any]:
        """The checkpoint after epoch ``epoch`` (0-based) is complete: state dicts and plain
        metadata only (loadable with ``weights_only=True``); ``partial``: steps of epoch
        ``epoch + 1`` done since (mid-epoch interrupt)."""
        state = {
            "model": model_state(self.model),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "losses": self.losses.state_dict() if isinstance(self.losses, torch.nn.Module) else {},
            "epoch": int(epoch),
            "best": to_plain(self.best),
            "history": to_plain(self.history),
            "before": to_plain(self.before),
            "config": to_plain(self.cfg.to_dict()),
            "num_classes": int(self.dataset.num_train_ids),
        }
        if partial is not None:
            state["partial"] = partial
        return state

    def load(self, path: str) -> None:
        """Resume from ``path`` (``auto``: this run's ``checkpoints/last.pth``)."""
        if path == "auto":
            path = str(self.out / "checkpoints" / "last.pth")
        state = load_checkpoint(path, map_location=self.device)
        if "optimizer" not in state or "epoch" not in state:
            raise CheckpointError(f"{path}: holds model weights only; cannot resume training from it")
        load_model_state(self.model, state["model"], path, f"model '{self.cfg.model.name}' of this config",
                         num_classes=(state.get("num_classes"), self.dataset.num_train_ids))
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"{path}: its optimizer state does not fit optimizer '{self.cfg.optimizer.name}' "
                                  f"of this config: {str(exc).strip().splitlines()[0]}") from None
        if self.scaler and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if state.get("losses"):
            self._load_loss_state(state["losses"], path)
        self.start_epoch = int(state["epoch"]) + 1
        self.best = state.get("best", self.best)
        self.history = state.get("history", [])
        self.before = state.get("before")
        self._partial = state.get("partial")
        epochs = int(self.cfg.train.epochs)
        if self.start_epoch >= epochs:
            where = f"after its last epoch ({epochs}/{epochs})"
        else:  # 1-based, as the progress bar and the epoch log lines count
            where = f"at epoch {self.start_epoch + 1}/{epochs}"
            if self._partial:
                where += f", iteration {int(self._partial['iteration']) + 1} (the steps before it are done)"
        self.log.info(f"=> resumed from {path} {where}")

    def _load_loss_state(self, loss_state: dict[str, Any], path: str) -> None:
        """Restore loss buffers (centres); buffers sized lazily take the saved shape."""
        own = dict(self.losses.named_buffers())
        for key, value in loss_state.items():
            if key not in own:
                raise CheckpointError(f"{path}: loss state '{key}' does not match the configured losses")
            module_path, _, buffer = key.rpartition(".")
            module = self.losses.get_submodule(module_path)
            setattr(module, buffer, value.to(self.device))

    def _save(self, name: str, epoch: int, partial: dict[str, Any] | None = None) -> Path:
        path = self.out / "checkpoints" / f"{name}.pth"
        if self.is_main:
            save_checkpoint(self.state(epoch, partial), path)
        return path

    # -------------------------------------------------------------------------------- Ctrl-C

    def _stop_requested(self) -> bool:
        return self._sigint is not None and self._sigint.requested

    def _stop(self, where: str, path: Path) -> None:
        """Log what the interrupt saved (one line) and raise TrainingInterrupted."""
        message = f"interrupted {where}: saved {path}; resume with --resume auto"
        if self.is_main:
            self.log.info(message)
        self.scalars.close()
        raise TrainingInterrupted(message)

    def _stop_after_epoch(self, epoch: int) -> None:
        """Ctrl-C arrived during epoch ``epoch``'s last step or evaluation: stop before the next."""
        epochs = int(self.cfg.train.epochs)
        if self._stop_requested() and epoch < epochs - 1:
            self._stop(f"after epoch {epoch + 1}/{epochs}", self._save("last", epoch))

    def _stop_in_epoch(self, epoch: int, steps: int, iters: int, sums: dict[str, float]) -> None:
        """Ctrl-C during epoch ``epoch``: save the state after its first ``steps`` steps."""
        partial = {"epoch": epoch, "iteration": steps, "sums": dict(sums), "rng": rng_state(self.device)}
        path = self._save("last", epoch - 1, partial)
        self._stop(f"in epoch {epoch + 1}/{self.cfg.train.epochs} after iteration {steps}/{iters}", path)

    # ------------------------------------------------------------------------------- training

    def fit(self) -> dict[str, Any]:
        """Train from ``start_epoch`` to ``train.epochs``, evaluate, write ``metrics.json``.

        Ctrl-C stops at the next safe point with a resumable ``checkpoints/last.pth`` and raises
        :class:`TrainingInterrupted` (semantics: :mod:`reid.engine.interrupt`).
        """
        self._sigint = SigintStop(announce=self.is_main, repeat_aborts=not self.distributed)
        try:
            with self._sigint:
                return self._fit_epochs()
        finally:
            self._sigint = None

    def _fit_epochs(self) -> dict[str, Any]:
        train = self.cfg.train
        epochs = int(train.epochs)
        if train.eval_before and self.before is None:
            self.before = self.evaluate("before training")
        metrics: dict[str, float] | None = None
        last_eval = -1
        for epoch in range(self.start_epoch, epochs):
            self.train_epoch(epoch)
            # 'last' is written before the evaluation (a failing evaluation loses no training) and
            # again after it, with the evaluation's record
            saves = (epoch + 1) % max(1, int(train.checkpoint_period)) == 0 or epoch == epochs - 1
            if saves:
                self._save("last", epoch)
            due = train.eval_period and (epoch + 1) % int(train.eval_period) == 0
            if due or epoch == epochs - 1:
                metrics = self.evaluate(f"epoch {epoch + 1}", step=epoch + 1)
                last_eval = epoch
                record = {"epoch": epoch + 1, **metrics}
                score = metrics["mAP"]
                if self.val_evaluator is not None:
                    val = self.evaluate(f"epoch {epoch + 1} (validation)", step=epoch + 1,
                                        evaluator=self.val_evaluator, tag="val")
                    record["val"] = val
                    score = val["mAP"]
                self.history.append(record)
                if score > self.best.get("score", self.best["mAP"]):
                    self.best = {**record, "score": score, "selected_on": self.cfg.train.select_on}
                    self._save("best", epoch)
                if saves:
                    self._save("last", epoch)
            self._stop_after_epoch(epoch)
        if metrics is None or last_eval != epochs - 1:
            metrics = self.evaluate("final")
        return self.finish(metrics)

    def finish(self, metrics: dict[str, float]) -> dict[str, Any]:
        summary = {
            "dataset": self.dataset.name,
            "model": self.cfg.model.name,
            "epochs": int(self.cfg.train.epochs),
            "final": metrics,
            "best": self.best,
            "before": self.before,
            "history": self.history,
        }
        if self.is_main:
            atomic_write_text(self.out / "metrics.json", json.dumps(to_plain(summary), indent=2))
            if self.before is not None:
                self.log.info(format_metrics(self.before, "before training"))
            self.log.info(format_metrics(metrics, "final"))
            self.log.info(f"=> outputs in {self.out}")
        self.scalars.close()
        return summary

    def _autocast(self):
        return autocast(self.device, self.amp)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass of the identity sampler; returns the epoch's mean loss terms."""
        cfg = self.cfg
        factor = lr_factor(epoch, cfg.schedule, float(cfg.optimizer.lr), int(cfg.train.epochs))
        set_lr(self.optimizer, factor)
        self.loader.set_epoch(epoch)
        torch.manual_seed(int(cfg.seed) * 1000 + epoch)  # dropout etc.: a function of the epoch
        self.model.train()
        counters = [m for m in (self.losses.modules() if isinstance(self.losses, torch.nn.Module) else [])
                    if hasattr(m, "missing")]  # losses counting samples without a mask: per epoch
        for m in counters:
            m.missing = 0
        iters = len(self.loader)
        if cfg.train.iters_per_epoch:
            iters = min(iters, int(cfg.train.iters_per_epoch))
        sums: dict[str, float] = {}
        seen = skip = stopped = 0
        partial, self._partial = self._partial, None
        if partial is not None and int(partial["epoch"]) == epoch:  # resuming after a Ctrl-C
            skip, sums = int(partial["iteration"]), dict(partial["sums"])
        start = time.perf_counter()
        bar = tqdm(total=iters, initial=min(skip, iters), desc=f"epoch {epoch + 1}/{cfg.train.epochs}",
                   disable=not self.is_main, leave=False, dynamic_ncols=True)
        lr = self.optimizer.param_groups[0]["lr"]
        for it, batch in enumerate(self.loader):
            if it >= iters:
                break
            if it < skip:  # stepped before the interrupt: the loader's random draws are replayed
                continue
            if it == skip and skip:
                set_rng_state(partial["rng"], self.device)
            if batch["images"].dtype != self.dtype:
                batch = {**batch, "images": batch["images"].to(self.dtype)}
            with self._autocast():
                outputs = self.forward_model(batch["images"])
                if self.gather:  # every rank computes the loss of the global batch
                    outputs = gather_outputs(outputs, batch["images"].shape[0])
                    total, parts = self.losses(outputs, gather_batch(batch))
                else:
                    total, parts = self.losses(outputs, batch)
            if not torch.isfinite(total):
                raise non_finite_loss(total, parts, batch["images"], epoch, it)
            backward_and_step(total, self.optimizer, self.scaler, self.model.parameters(),
                              float(cfg.train.grad_clip or 0))
            n = batch["images"].shape[0]
            seen += n
            values = {"loss": float(total.detach()), **{k: float(v) for k, v in parts.items()}}
            if self.distributed and not self.gather:  # local losses: log their mean over ranks
                values = self._mean_over_ranks(values)
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v
            if self.is_main:
                self.loss_watch(values["loss"], epoch, it)
            step = epoch * iters + it
            elapsed = time.perf_counter() - start
            bar.set_postfix(loss=f"{values['loss']:.3f}", lr=f"{lr:.2e}",
                            img_s=f"{seen * self.world_size / max(elapsed, 1e-9):.0f}")
            bar.update(1)
            if self.is_main and (it + 1) % max(1, int(cfg.train.log_period)) == 0:
                for k, v in values.items():
                    self.scalars.add(f"train/{k}", v, step)
                self.scalars.add("train/lr", lr, step)
            if self._stop_requested() and it + 1 < iters:
                stopped = it + 1
                break
        bar.close()
        if stopped:
            self._stop_in_epoch(epoch, stopped, iters, sums)
        done = max(1, min(iters, len(self.loader)))
        means = {k: v / done for k, v in sums.items()}
        elapsed = time.perf_counter() - start
        if self.is_main:
            terms = " ".join(f"{k} {v:.4f}" for k, v in means.items())
            if counters:
                terms += f" (samples without a mask: {sum(int(m.missing) for m in counters)})"
            self.log.info(
                f"epoch {epoch + 1}/{cfg.train.epochs} lr {lr:.2e} {terms} "
                f"({seen * self.world_size / max(elapsed, 1e-9):.0f} img/s, {elapsed:.1f}s)"
            )
            self.scalars.add("epoch/loss", means.get("loss", math.nan), epoch + 1)
        return means

    # ----------------------------------------------------------------------------- evaluation

    def _eval_model(self) -> torch.nn.Module:
        return self.model if self.dtype == torch.float32 else _CastInput(self.model, self.dtype)

    def _mean_over_ranks(self, values: dict[str, float]) -> dict[str, float]:
        t = torch.tensor(list(values.values()), dtype=torch.float64,
                         device=self.device if dist.get_backend() == "nccl" else "cpu")
        dist.all_reduce(t)
        return dict(zip(values, (t / self.world_size).tolist()))

    def _validation_evaluator(self) -> Evaluator | None:
        """With ``train.select_on: val``: held-out training images (``dataset.val``) as queries
        against the training images as gallery, in the training label space."""
        mode = self.cfg.train.select_on
        if mode == "test":
            return None
        if mode != "val":
            raise ConfigError(f"train.select_on must be 'test' or 'val', got '{mode}'")
        if not self.dataset.val:
            raise ConfigError(
                f"train.select_on=val, but data set '{self.dataset.name}' holds out no validation images "
                "(hand sets and HD do; MSMT17 with dataset.combine_val=false does); use train.select_on=test"
            )
        protocol = "hands" if self.dataset.protocol == "hands" else "market"
        val = ReidDataset(f"{self.dataset.name}-val", train=[], query=list(self.dataset.val),
                          gallery=list(self.dataset.train), protocol=protocol)
        return Evaluator(self.cfg, val, self.device)

    def evaluate(self, title: str = "eval", step: int | None = None, evaluator: Evaluator | None = None,
                 tag: str = "eval") -> dict[str, float]:
        """Metrics of the current model; under DDP every rank extracts its share of the features
        (with rank 0's BatchNorm statistics), rank 0 computes the metrics and broadcasts them."""
        evaluator = evaluator or self.evaluator
        if self.distributed:
            for buffer in self.model.buffers():  # running statistics drift apart after the last step
                dist.broadcast(buffer, src=0)
            box: list[Any] = [evaluator.evaluate(self._eval_model())]
            dist.broadcast_object_list(box, src=0)
            metrics = box[0]
        else:
            metrics = evaluator.evaluate(self._eval_model())
        if self.is_main:
            self.log.info(format_metrics(metrics, title))
            if step is not None:
                for k, v in metrics.items():
                    self.scalars.add(f"{tag}/{k}", v, step)
        return metrics
