"""Training and evaluation engine: the trainer and its hooks, the evaluator, optimiser/schedule, checkpoints."""
from .checkpoint import load_checkpoint, save_checkpoint  # noqa: F401
from .device import resolve_device, seed_everything  # noqa: F401
from .evaluator import Evaluator, format_metrics  # noqa: F401
from .hooks import EpochStats, HookBase  # noqa: F401
from .trainer import Trainer  # noqa: F401
