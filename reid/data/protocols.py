"""Evaluation protocols: how a data set's query and gallery are scored, looked up by name.

A data set names its protocol (``ReidDataset.protocol``, e.g. ``"market"``); the evaluator, the
ranking metrics and the validation split read the rules from the :class:`Protocol` registered
under that name, never from tests on the name itself. A new protocol is one
``register_protocol(Protocol(...))`` call (see docs/extending.md).
"""
from __future__ import annotations

from dataclasses import dataclass

from reid.registry import Registry


@dataclass(frozen=True)
class Protocol:
    """The scoring rules of one evaluation protocol.

    ``cross_camera``: gallery images of the query's identity taken by the query's camera are
    removed (Market-1501); a query left without a true match is skipped.
    ``single_gallery_shot``: number of seeded draws of one gallery image per identity for the CMC
    (CUHK03 classic); 0: the CMC ranks the whole gallery. AP and INP always use the whole gallery.
    ``draws``: seeded query/gallery redraws the published protocol averages over (11k Hands, HD: 10);
    the parser makes them (its ``num_draws`` default) and the evaluator reports their mean and std.
    ``validation``: the protocol that scores held-out training images (``ReidDataset.val``) against
    the training images.
    """

    name: str
    cross_camera: bool = True
    single_gallery_shot: int = 0
    draws: int = 1
    validation: str = "market"
    description: str = ""


#: Protocols by name; ``PROTOCOLS.get(name)`` raises a ConfigError suggesting the closest name.
PROTOCOLS = Registry("evaluation protocol")


def register_protocol(protocol: Protocol) -> Protocol:
    """Register ``protocol`` under ``protocol.name``; returns it."""
    PROTOCOLS.register(protocol.name)(protocol)
    return protocol


def get_protocol(protocol: str | Protocol) -> Protocol:
    """The :class:`Protocol` named ``protocol`` (a Protocol is returned as is)."""
    return protocol if isinstance(protocol, Protocol) else PROTOCOLS.get(str(protocol))


MARKET = register_protocol(Protocol(
    "market", description="Market-1501 / DukeMTMC / MSMT17 / CUHK03 new protocol: same identity and camera removed"))
CUHK03 = register_protocol(Protocol(
    "cuhk03", single_gallery_shot=10,
    description="CUHK03 classic: market removal, CMC over 10 single-gallery-shot draws"))
HANDS = register_protocol(Protocol(
    "hands", cross_camera=False, draws=10, validation="hands",
    description="11k Hands / HD (Baisa et al.): no camera filter, mean and std over 10 seeded draws"))
