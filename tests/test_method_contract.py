"""The method contract (r2bench.methods.contract), checked for every registered method — present
and future — through the same functions ``r2bench check-method`` runs on a plugin.

A new method file is covered here without editing this test: it builds on the meta device
and under fake tensors; what it adds is counted, optimised and saved; padding frames never
change real frames' outputs; train()/eval() reach every module; METL/frozen methods keep
autograd out of the backbone and PETL/full methods get gradients through it; a checkpoint
reloads to identical outputs; cached features give what frames give.
"""
import math

import pytest
import torch
from torch import nn

from r2bench.bench.measure import count_params
from r2bench.methods import contract
from r2bench.methods.backbone import Backbone
from r2bench.methods.registry import registered

METHODS = registered()


@pytest.fixture(scope="module")
def backbone_state():
    return contract.random_backbone_state()


@pytest.mark.parametrize("check", contract.CHECKS, ids=lambda c: c.name)
@pytest.mark.parametrize("name", METHODS)
def test_method_contract(name, check, backbone_state):
    try:
        check.run(name, backbone_state)
    except contract.ContractSkip as e:
        pytest.skip(str(e))


def test_every_check_is_a_named_function_of_the_library():
    names = [c.name for c in contract.CHECKS]
    assert names == ["registration", "meta_build", "fake_tensor_step", "learnable_parameters", "train_eval",
                     "padding", "backbone_gradient", "checkpoint", "cached_features"]
    for c in contract.CHECKS:
        assert getattr(contract, f"check_{c.name}") is c.run


def test_a_parameter_held_by_a_hook_is_registered(backbone_state):
    """The failure the old interface had: a plain-object hook's parameters were invisible."""
    from r2bench.methods.hooks import BlockHooks

    class Adapter(BlockHooks):
        towers = ("video",)

        def __init__(self, width):
            super().__init__()
            self.scale = nn.Parameter(torch.zeros(width))

        def mlp_input(self, i, x, ctx):
            return x + self.scale

    from r2bench.methods.model import TransferModel
    from r2bench.methods.head import HeadConfig
    backbone = Backbone("R2Bench-Tiny")
    model = TransferModel(backbone, HeadConfig(k=1, **contract.SMALL_HEAD), backbone_grad=True,
                          hooks=Adapter(backbone.video_width))
    assert "hooks.scale" in model.learnable_state_dict()
    assert count_params(model) == count_params(model.head) + backbone.video_width
    with torch.no_grad():
        assert math.isfinite(float(model(contract.batch_of(contract.make_items(model))).h.sum()))
