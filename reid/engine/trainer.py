"""The one trainer: builds the run's parts, runs the epoch loop and calls its hooks.

What happens around the steps (evaluation, checkpoints, best-model selection, logs, loss
statistics) lives in :mod:`reid.engine.hooks`; a subclass changes a part by overriding a
``build_*`` method (``build_dataset``, ``build_model``, ``build_losses``, ``build_loader``,
``build_optimizer``, ``build_evaluator``, ``build_hooks``). Devices and seeds:
:mod:`reid.engine.device`; mixed precision: :mod:`reid.engine.amp`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tqdm import tqdm

import reid.data
import reid.losses
import reid.models
from reid.atomic_io import atomic_write_text, remove_stale_temporaries
from reid.config import Config, save_config
from reid.data.datasets.base import ReidDataset
from reid.models.checkpointing import checkpoint_modules
from reid.models.layers.shards import emulate_data_parallel
from reid.registry import ConfigError

from .amp import DTYPES, CastInput, amp_dtype, autocast, backward_and_step, grad_scaler
from .checkpoint import CheckpointError, load_checkpoint, model_state, save_checkpoint, to_plain
from .ddp_order import local_rank_zero_first
from .device import resolve_device, seed_everything
from .evaluator import Evaluator, check_draws, format_metrics
from .gather import convert_sync_bn, gather_batch, gather_outputs
from .guards import (
    LossWatch,
    check_finite_weights,
    check_recipe,
    check_run_paths,
    load_model_state,
    move_run_aside,
    non_finite_loss,
    previous_run,
)
from .hooks import EpochStats, HookBase, default_hooks
from .host_memory import keep_freed_host_memory
from .interrupt import SigintStop, TrainingInterrupted, rng_state, set_rng_state
from .optim import build_optimizer
from .runlog import Scalars, release_log, setup_logger
from .schedule import lr_factor, set_lr

# moved to .device / .amp; still importable from here
__all__ = ["Trainer", "DTYPES", "amp_dtype", "autocast", "backward_and_step", "resolve_device", "seed_everything"]


class Trainer:
    """Trains ``cfg.model`` on ``cfg.dataset`` and evaluates it.

    Output folder (``cfg.output_dir``): ``config.yaml`` (resolved), ``log.txt``, ``tb/`` TensorBoard
    events, ``checkpoints/last.pth`` and ``best.pth`` (atomic), ``metrics.json``.
    """

    #: True while :meth:`fit` runs (the evaluation and checkpoint hooks act only then).
    fitting: bool = False

    def __init__(self, cfg: Config, resume: str | None = None, rank: int = 0, world_size: int = 1,
                 overwrite: bool = False):
        # before any work: folders writable, a previous run resumed or moved aside, checkpoint present
        check_run_paths(cfg, resume, overwrite)
        self.cfg, self.rank, self.world_size, self.is_main = cfg, rank, world_size, rank == 0
        self.out = Path(cfg.output_dir)
        self.log = setup_logger(self.out, rank, hold=True)  # log.txt is written once the run is set up
        seed_everything(int(cfg.seed))
        self.device = resolve_device(cfg.device)
        if self.device.type == "cpu":
            keep_freed_host_memory()
        # a process group of this world size (torchrun, also with one process) trains under DDP
        self.distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() == world_size
        self.dtype = DTYPES[cfg.train.dtype]
        with local_rank_zero_first(self.distributed, rank):
            self.dataset = self.build_dataset()
            self.model = self.place_model(self.build_model())
            self.losses = self.build_losses().to(self.device)
            self.loader = self.build_loader()
        self.optimizer = self.build_optimizer()
        self.amp = amp_dtype(cfg.train.amp, self.device)
        self.scaler = grad_scaler(self.amp)
        self.gather = self.distributed and bool(cfg.train.gather_outputs)
        self.ddp, self.forward_model = self.wrap_model()
        self.evaluator, self.val_evaluator = self.build_evaluator(), self.build_validation_evaluator()
        self.start_epoch, self.best, self.history = 0, {"mAP": -1.0, "epoch": -1}, []
        self.before: dict[str, float] | None = None  # metrics of the untrained model (train.eval_before)
        self.final: dict[str, float] | None = None  # metrics of the latest evaluation in fit
        self.loss_watch = LossWatch(self.log)
        self.hooks = self.register_hooks(self.build_hooks())
        if resume:
            self.load(resume)
        if self.is_main:  # set up: only now is output_dir changed (a refused resume changes nothing)
            self.take_folder(overwrite)
        release_log(self.log)
        self.scalars = Scalars(self.out / "tb", rank)

    def take_folder(self, overwrite: bool) -> None:
        """Rank 0, once the run is set up: with ``overwrite`` move a previous run aside (never
        delete it), remove temporary files of killed writers, write ``config.yaml``."""
        if overwrite and previous_run(self.out):
            self.log.info(f"=> --overwrite: moved the previous run in {self.out} to {move_run_aside(self.out)}")
        for folder in (self.out, self.out / "checkpoints"):
            for path in remove_stale_temporaries(folder):
                self.log.info(f"=> removed {path}, left by a writer that was killed")
        save_config(self.cfg, self.out / "config.yaml")

    # ------------------------------------------------------------------------ the run's parts

    def build_dataset(self) -> ReidDataset:
        """``cfg.dataset``; a test protocol that cannot be evaluated fails here, before training."""
        dataset = reid.data.build_dataset(self.cfg, verbose=False)
        check_draws(dataset)
        if self.is_main:
            self.log.info(dataset.summary())
        return dataset

    def build_model(self) -> torch.nn.Module:
        """``cfg.model`` with a classifier over the training identities (on the CPU, float32)."""
        return reid.models.build_model(self.cfg.model, self.dataset.num_train_ids, input_size=self.cfg.input.size)

    def place_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """Device and dtype; DataParallel's per-shard BatchNorm (``train.shards``); SyncBN
        (``train.sync_bn`` under DDP), ``train.channels_last``,
        activation checkpointing (``train.checkpoint_modules``)."""
        model = model.to(self.device, self.dtype)
        shards = int(self.cfg.train.shards)
        if shards > 1:  # DataParallel's shards within each process's batch (N / W of them under DDP)
            if shards % self.world_size or (self.distributed and self.cfg.train.sync_bn):
                raise ConfigError(f"train.shards = {shards} needs a multiple of the {self.world_size} processes "
                                  "and train.sync_bn = false")
            per_shard = int(self.cfg.sampler.num_ids) * int(self.cfg.sampler.num_instances) * self.world_size // shards
            if per_shard < 2:
                raise ConfigError(f"train.shards = {shards} leaves {per_shard} image per shard of the "
                                  "sampler.num_ids x num_instances batch (BatchNorm needs 2); lower train.shards")
            model = emulate_data_parallel(model, shards // self.world_size)
        if self.distributed and self.cfg.train.sync_bn:
            model = convert_sync_bn(model, self.device)
        if self.cfg.train.channels_last:
            model = model.to(memory_format=torch.channels_last)
        checkpoint_modules(model, self.cfg.train.checkpoint_modules)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        return model

    def build_losses(self) -> torch.nn.Module:
        """``cfg.losses``: a module mapping (outputs, batch) to (total, {label: term})."""
        return reid.losses.build_losses(self.cfg.losses)

    def build_loader(self) -> Any:
        """The identity-sampled training batches (this rank's share under DDP)."""
        return reid.data.build_train_loader(self.cfg, self.dataset, self.device, rank=self.rank,
                                            world_size=self.world_size)

    def build_optimizer(self) -> torch.optim.Optimizer:
        """``cfg.optimizer`` over the model's parameter groups."""
        return build_optimizer(self.cfg.optimizer, self.model)

    def wrap_model(self) -> tuple[torch.nn.Module | None, torch.nn.Module]:
        """(the DDP wrapper or None, the module the steps call: DDP and/or ``torch.compile``);
        ``self.model`` stays the plain module (checkpoints, evaluation)."""
        ddp = None
        if self.distributed:
            ids = [self.device.index] if self.device.type == "cuda" and self.device.index is not None else None
            ddp = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=ids, find_unused_parameters=bool(self.cfg.train.find_unused_parameters))
        wrapped = ddp if ddp is not None else self.model
        return ddp, torch.compile(wrapped) if self.cfg.train.compile else wrapped

    def build_hooks(self) -> list[HookBase]:
        """The hooks :meth:`fit` and :meth:`train_epoch` call, in order (see :mod:`.hooks`)."""
        return default_hooks()

    def register_hooks(self, hooks: list[HookBase]) -> list[HookBase]:
        for hook in hooks:
            hook.trainer = self
        return list(hooks)

    def _call(self, point: str, *args: Any) -> None:
        for hook in self.hooks:
            getattr(hook, point)(*args)

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
        check_recipe(state.get("config"), self.cfg.to_dict(), path, self.log)
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

    def save(self, name: str, epoch: int, partial: dict[str, Any] | None = None) -> Path:
        """Write ``checkpoints/NAME.pth`` (rank 0) with :meth:`state`; returns its path."""
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
        raise TrainingInterrupted(message, *([self._sigint.signum] if self._sigint else []))

    def _stop_after_epoch(self, epoch: int) -> None:
        """Ctrl-C arrived during epoch ``epoch``'s last step or evaluation: stop before the next."""
        epochs = int(self.cfg.train.epochs)
        if self._stop_requested() and epoch < epochs - 1:
            self._stop(f"after epoch {epoch + 1}/{epochs}", self.save("last", epoch))

    def _stop_in_epoch(self, stats: EpochStats) -> None:
        """Ctrl-C during an epoch: save the state after its first ``stats.stopped`` steps."""
        epoch = stats.epoch
        partial = {"epoch": epoch, "iteration": stats.stopped, "sums": dict(stats.sums),
                   "rng": rng_state(self.device)}
        path = self.save("last", epoch - 1, partial)
        self._stop(f"in epoch {epoch + 1}/{self.cfg.train.epochs} after iteration {stats.stopped}/{stats.iters}",
                   path)

    # ------------------------------------------------------------------------------- training

    def fit(self) -> dict[str, Any]:
        """Train from ``start_epoch`` to ``train.epochs`` with the hooks, write ``metrics.json``.

        Ctrl-C stops at the next safe point with a resumable ``checkpoints/last.pth`` and raises
        :class:`TrainingInterrupted` (semantics: :mod:`reid.engine.interrupt`).
        """
        self._sigint = SigintStop(announce=self.is_main, repeat_aborts=not self.distributed)
        self.fitting = True
        try:
            with self._sigint:
                self._call("before_train")
                for epoch in range(self.start_epoch, int(self.cfg.train.epochs)):
                    self.train_epoch(epoch)
                    self._stop_after_epoch(epoch)
                self._call("after_train")
                return self.finish(self.final)
        finally:
            self._sigint, self.fitting = None, False

    def finish(self, metrics: dict[str, float] | None) -> dict[str, Any]:
        """Write ``metrics.json`` (final, best, before, history) and the closing log lines."""
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
            if metrics is not None:
                self.log.info(format_metrics(metrics, "final"))
            self.log.info(f"=> outputs in {self.out}")
        self.scalars.close()
        return summary

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass of the identity sampler (at most ``train.iters_per_epoch`` steps) with the
        epoch hooks; returns the epoch's mean loss terms. Non-finite weights stop it before the
        ``after_epoch`` hooks (evaluation, checkpoints, best-model selection) see them."""
        stats = self._begin_epoch(epoch)
        self._call("before_epoch", stats)
        bar = tqdm(total=stats.iters, initial=min(stats.skip, stats.iters), desc=f"epoch {epoch + 1}/"
                   f"{self.cfg.train.epochs}", disable=not self.is_main, leave=False, dynamic_ncols=True)
        for it, batch in enumerate(self.loader):
            if it >= stats.iters:
                break
            if it < stats.skip:  # stepped before the interrupt: the loader's random draws are replayed
                continue
            if it == stats.skip and stats.skip:
                set_rng_state(stats.rng, self.device)
            values = self.run_step(batch, epoch, it)
            stats.add(values, batch["images"].shape[0])
            self._call("after_step", stats, it, values)
            bar.set_postfix(loss=f"{values['loss']:.3f}", lr=f"{stats.lr:.2e}",
                            img_s=f"{stats.images_per_second(self.world_size):.0f}")
            bar.update(1)
            if self._stop_requested() and it + 1 < stats.iters:
                stats.stopped = it + 1
                break
        bar.close()
        # before any hook evaluates or saves the model (a NaN BatchNorm statistic leaves the loss finite)
        check_finite_weights(self.model, f"in epoch {epoch + 1} after iteration {stats.stopped}" if stats.stopped
                             else f"after epoch {epoch + 1}")
        if stats.stopped:
            self._stop_in_epoch(stats)
        stats.finish(len(self.loader))
        self._call("after_epoch", stats)
        return stats.means

    def _begin_epoch(self, epoch: int) -> EpochStats:
        """The epoch's lr and sampler order, seeds, train mode; a Ctrl-C resume's done steps."""
        cfg = self.cfg
        set_lr(self.optimizer, lr_factor(epoch, cfg.schedule, float(cfg.optimizer.lr), int(cfg.train.epochs)))
        self.loader.set_epoch(epoch)
        torch.manual_seed(int(cfg.seed) * 1000 + epoch)  # dropout etc.: a function of the epoch
        self.model.train()
        iters = len(self.loader)
        if cfg.train.iters_per_epoch:
            iters = min(iters, int(cfg.train.iters_per_epoch))
        stats = EpochStats(epoch, iters, lr=self.optimizer.param_groups[0]["lr"])
        partial, self._partial = self._partial, None
        if partial is not None and int(partial["epoch"]) == epoch:  # resuming after a Ctrl-C
            stats.skip, stats.sums, stats.rng = int(partial["iteration"]), dict(partial["sums"]), partial["rng"]
        return stats

    def _autocast(self):
        return autocast(self.device, self.amp)

    def run_step(self, batch: dict[str, Any], epoch: int, it: int) -> dict[str, float]:
        """Forward, losses, update; returns the step's loss terms (under DDP without gathered
        outputs: their mean over the ranks). A non-finite loss stops before the update."""
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
                          float(self.cfg.train.grad_clip or 0))
        values = {"loss": float(total.detach()), **{k: float(v) for k, v in parts.items()}}
        if self.distributed and not self.gather:  # local losses: log their mean over ranks
            values = self._mean_over_ranks(values)
        return values

    # ----------------------------------------------------------------------------- evaluation

    def _eval_model(self) -> torch.nn.Module:
        return self.model if self.dtype == torch.float32 else CastInput(self.model, self.dtype)

    def _mean_over_ranks(self, values: dict[str, float]) -> dict[str, float]:
        t = torch.tensor(list(values.values()), dtype=torch.float64,
                         device=self.device if dist.get_backend() == "nccl" else "cpu")
        dist.all_reduce(t)
        return dict(zip(values, (t / self.world_size).tolist()))

    def build_evaluator(self) -> Evaluator:
        """The test protocol's evaluator (query against gallery of ``self.dataset``)."""
        return Evaluator(self.cfg, self.dataset, self.device)

    def build_validation_evaluator(self) -> Evaluator | None:
        """With ``train.select_on: val``: held-out training images (``dataset.val``) as queries
        against the training images as gallery, in the training label space."""
        if self.cfg.train.select_on == "test":
            return None
        if not self.dataset.val:
            raise ConfigError(
                f"train.select_on=val, but data set '{self.dataset.name}' holds out no validation images "
                "(hand sets and HD do; MSMT17 with dataset.combine_val=false does); use train.select_on=test"
            )
        protocol = self.dataset.evaluation_protocol.validation
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
