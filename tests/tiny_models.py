"""Small models on the tiny CLIP, shared by the method tests: one random backbone state (seed 0)
loaded into a fresh backbone per model, so every model of a test starts from the same CLIP."""
from __future__ import annotations

import torch

from r2bench.methods.backbone import Backbone
from r2bench.methods.registry import build_model


def random_backbone_state() -> dict:
    """The state of an R2Bench-Tiny backbone initialised with seed 0."""
    torch.manual_seed(0)
    return Backbone("R2Bench-Tiny").state_dict()


def tiny_model(name: str, backbone_state: dict | None, head: dict, seed: int = 0, **overrides):
    """Method ``name`` on a fresh tiny backbone (``backbone_state`` loaded unless None), head
    config ``head`` updated by ``overrides``, its own parameters initialised with ``seed``."""
    backbone = Backbone("R2Bench-Tiny")
    if backbone_state is not None:
        backbone.load_state_dict(backbone_state)
    torch.manual_seed(seed)
    return build_model(name, backbone, {**head, **overrides})
