"""Ctrl-C or SIGTERM during training: stop at the next safe point with a resumable checkpoint.

SIGTERM (what ``timeout``, Slurm, ``docker stop`` and ``kill`` send) is handled exactly as Ctrl-C
(SIGINT); the tools then exit with 128 + the signal's number (130 for SIGINT, 143 for SIGTERM).
Semantics (``Trainer.fit``):

* The first signal only sets :attr:`SigintStop.requested`; no step is ever cut in half.
* During an epoch's training steps, training stops after the current step. ``checkpoints/last.pth``
  then holds the state after that step plus ``partial = {epoch, iteration (steps done), sums (of
  the logged loss terms), rng (torch CPU/CUDA generator states)}``. ``--resume`` re-runs the
  epoch's set-up, replays the loader for the steps already done (its random draws only: no
  forward or backward pass), restores the generators and continues with the next step, so the
  parameters equal those of an uninterrupted run.
* During the last step of an epoch or its evaluation, the epoch is completed (evaluation, best and
  last checkpoints) and training stops before the next epoch: ``last.pth`` is then an ordinary
  end-of-epoch checkpoint. After the last epoch the run simply finishes.
* A second signal raises ``KeyboardInterrupt`` at once and saves nothing more (``last.pth`` keeps
  its previous content: writes are atomic). Under torchrun, which sends the terminal's Ctrl-C to
  its workers a second time, repeats are ignored; the global rank 0 alone saves.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

import torch

#: The signals that stop training with a checkpoint, and how the messages name them.
STOP_SIGNALS = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on Ctrl-C or SIGTERM; the message says what was saved; ``signum`` is the
    signal (the tools exit with 128 + signum)."""

    def __init__(self, message: str = "", signum: int = signal.SIGINT):
        super().__init__(message)
        self.signum = int(signum)


class SigintStop:
    """Context manager that turns the first SIGINT or SIGTERM into a stop request (see the module
    docstring); :attr:`signum` is the signal received.

    ``announce``: print what happens on stderr; ``repeat_aborts``: a second signal raises
    KeyboardInterrupt (else it is ignored). Outside the main thread no handler can be installed and
    the signals keep their usual behaviour.
    """

    def __init__(self, announce: bool = True, repeat_aborts: bool = True):
        self.announce, self.repeat_aborts = announce, repeat_aborts
        self.requested = False
        self.signum = int(signal.SIGINT)
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> SigintStop:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for s, previous in self._previous.items():
            signal.signal(s, previous)
        self._previous = {}

    def _say(self, text: str) -> None:
        if self.announce:  # os.write: no buffered stream is re-entered from a signal handler
            try:
                os.write(sys.stderr.fileno(), f"\n{text}\n".encode())
            except (OSError, ValueError, AttributeError):
                pass

    def _handle(self, signum: int, frame: Any) -> None:
        if not self.requested:
            self.requested, self.signum = True, int(signum)
            name = STOP_SIGNALS.get(signum, f"signal {signum}")
            again = ("press Ctrl-C again to quit without saving" if signum == signal.SIGINT
                     else f"send {name} again to quit without saving") if self.repeat_aborts else "please wait"
            self._say(f"{name}: stopping after the current training step (or evaluation) to save a "
                      f"resumable checkpoint; {again}")
        elif self.repeat_aborts:
            raise KeyboardInterrupt


def rng_state(device: torch.device) -> dict[str, Any]:
    """The torch generator states a training step draws from (dropout, DropBlock, ...)."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Restore :func:`rng_state` (a CUDA state saved on another device kind is skipped)."""
    torch.set_rng_state(state["cpu"].cpu())
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)
