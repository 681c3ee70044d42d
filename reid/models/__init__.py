"""Backbones, heads and networks; importing this package fills BACKBONES, LAYERS and MODELS."""
# registration: backbones, attention layers, networks
from reid.models import backbones, bdb, bot, lagnet, layers, mmga, multibranch, rganet  # noqa: F401
from reid.models.build import build_model, summary

__all__ = ["build_model", "summary"]
