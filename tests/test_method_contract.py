"""The method contract, checked for every registered method — present and future.

A new method file is covered here without editing this test: it builds on the meta device
and under fake tensors; what it adds is counted, optimised and saved; padding frames never
change real frames' outputs; train()/eval() reach every module; METL/frozen methods keep
autograd out of the backbone and PETL/full methods get gradients through it; a checkpoint
reloads to identical outputs; cached features give what frames give.
"""
import math
from functools import partial

import pytest
import torch
from torch import nn

from r2bench.bench.measure import count_params, estimate_peak_memory
from r2bench.bench.train import TrainConfig, build_optimizer, load_checkpoint, make_step_state, save_checkpoint, train_step
from r2bench.datasets.vtg import collate
from r2bench.methods.backbone import Backbone
from r2bench.methods.registry import GRADIENT_CATEGORIES, build_model, get_method, registered
from tests.tiny_models import random_backbone_state
from tests.tiny_models import tiny_model as shared_tiny_model

METHODS = registered()
SMALL_HEAD = dict(hidden=32, heads=4, ffn=64, dropout=0.1)   # every method config derives from HeadConfig


@pytest.fixture(scope="module")
def backbone_state():
    return random_backbone_state()


def tiny_model(name, backbone_state, seed=0, **overrides):
    return shared_tiny_model(name, backbone_state, SMALL_HEAD, seed, **overrides)


def clip_parameter_names(model) -> set[str]:
    """Names the backbone's own CLIP parameters have inside ``model`` (peft may insert
    ``base_layer`` into them)."""
    vanilla = {f"backbone.{n}" for n, _ in Backbone("R2Bench-Tiny", device="meta").named_parameters()}
    return {n for n, _ in model.named_parameters() if n.replace(".base_layer", "") in vanilla}


def make_items(model, lengths=(12, 9), queries=("a red circle moving left", "a square"), seed=0):
    g = torch.Generator().manual_seed(seed)
    size = model.backbone.image_size
    ids = model.backbone.tokenize(list(queries))
    items = []
    for i, (t, q) in enumerate(zip(lengths, queries)):
        saliency = torch.zeros(t)
        saliency[1:3] = torch.tensor([2.0, 3.0])
        items.append(dict(qid=i, vid=f"v{i}", query=q, duration=2.0 * t, source="frames",
                          video=torch.randn(t, 3, size, size, generator=g), text_ids=ids[i],
                          windows=torch.tensor([[2.0, 6.0]]), saliency=saliency))
    return items


def batch_of(items):
    return collate(items, fps=0.5)


@pytest.mark.parametrize("name", METHODS)
def test_builds_on_the_meta_device_with_the_papers_backbone(name):
    with torch.device("meta"):
        model = build_model(name, Backbone("ViT-B-32", device="meta"))
    assert count_params(model) > 0
    assert model.backbone_grad == (get_method(name).category in GRADIENT_CATEGORIES)


@pytest.mark.parametrize("name", METHODS)
def test_a_training_step_runs_under_fake_tensors(name, backbone_state):
    def step():
        model = tiny_model(name, None).train()
        state = make_step_state(model, TrainConfig(), torch.device("cpu"),
                                autocast=partial(torch.autocast, "cpu", dtype=torch.float16))
        ids = torch.zeros(2, 6, dtype=torch.long)   # fixed ids: trimming real ones reads their values
        ids[:, 0], ids[:, 1:5], ids[:, 5] = 49406, 320, 49407
        size = model.backbone.image_size
        batch = dict(frames=torch.randn(2, 12, 3, size, size), video_mask=torch.ones(2, 12, dtype=torch.bool),
                     text_ids=ids, windows=[torch.tensor([[2.0, 6.0]])] * 2, saliency=torch.ones(2, 12),
                     fps=torch.full((2,), 0.5), duration=torch.full((2,), 24.0))
        train_step(model, batch, state)
    assert estimate_peak_memory(step) > 0


@pytest.mark.parametrize("name", METHODS)
def test_what_a_method_adds_is_counted_optimised_saved_and_reached_by_the_loss(name, backbone_state, tmp_path):
    model = tiny_model(name, backbone_state).train()
    learnable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert count_params(model) == sum(p.numel() for p in learnable.values())
    optimizer = build_optimizer(model, TrainConfig())
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == {id(p) for p in learnable.values()}
    saved = model.learnable_state_dict()
    assert set(learnable) <= set(saved)
    state = make_step_state(model, TrainConfig(), torch.device("cpu"))
    train_step(model, batch_of(make_items(model)), state)
    added = set(learnable) - clip_parameter_names(model)
    unreached = sorted(n for n in added if learnable[n].grad is None and learnable[n].numel())
    assert not unreached, f"parameters the loss never reaches (dead weights): {unreached[:5]}"


@pytest.mark.parametrize("name", METHODS)
def test_train_and_eval_reach_every_module(name, backbone_state):
    model = tiny_model(name, backbone_state)
    model.train()
    assert all(m.training for m in model.modules())
    model.eval()
    assert not any(m.training for m in model.modules())


@pytest.mark.parametrize("name", METHODS)
def test_padding_frames_do_not_change_real_frames(name, backbone_state):
    model = tiny_model(name, backbone_state).train()
    long, short = make_items(model)
    # one step first: zero-initialised branches (adapters, side networks) are inert at init and
    # would pass whatever they do with padded frames
    train_step(model, batch_of([long, short]), make_step_state(model, TrainConfig(lr=1e-2), torch.device("cpu")))
    model.eval()
    batch = batch_of([long, short])
    extra = 3                               # the same batch with 3 more padded frames at the end
    padded = dict(batch, frames=torch.cat([batch["frames"], torch.randn(2, extra, *batch["frames"].shape[2:])], 1),
                  video_mask=torch.cat([batch["video_mask"], torch.zeros(2, extra, dtype=torch.bool)], 1),
                  saliency=torch.cat([batch["saliency"], torch.zeros(2, extra)], 1))
    with torch.no_grad():
        a, b = model(batch), model(padded)
    real = batch["video_mask"]
    torch.testing.assert_close(b.h[:, : real.shape[1]][real], a.h[real], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(b.query, a.query, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", METHODS)
def test_gradients_flow_through_the_backbone_exactly_when_the_category_says(name, backbone_state):
    model = tiny_model(name, backbone_state).train()
    seen = {}
    last = model.backbone.video_blocks[max(model.video_taps.layers)].mlp   # the backbone calls a block's parts
    handle = last.register_forward_hook(lambda m, i, o: seen.setdefault("requires_grad", o.requires_grad))
    batch = batch_of(make_items(model))
    out = model(batch)
    model.loss(out, batch)["total"].backward()
    handle.remove()
    clip = clip_parameter_names(model)
    assert "requires_grad" in seen, "the test batch comes as frames, so the backbone must run"
    if get_method(name).category in GRADIENT_CATEGORIES:
        assert seen["requires_grad"], "PETL/full: the backbone must run with autograd"
        trained = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is not None]
        assert trained, "PETL/full: some trainable weight must get a gradient"
    else:
        assert not seen["requires_grad"], "METL/frozen: the backbone must run without autograd"
        assert not [n for n, p in model.named_parameters() if n in clip and p.grad is not None]


@pytest.mark.parametrize("name", METHODS)
def test_save_then_load_gives_identical_outputs(name, backbone_state, tmp_path):
    model = tiny_model(name, backbone_state).train()
    state = make_step_state(model, TrainConfig(lr=1e-2), torch.device("cpu"))
    batch = batch_of(make_items(model))
    train_step(model, batch, state)
    path = save_checkpoint(model, tmp_path / "ckpt.safetensors")
    fresh = tiny_model(name, backbone_state, seed=1)
    load_checkpoint(fresh, path)
    model.eval(), fresh.eval()
    with torch.no_grad():
        a, b = model(batch), fresh(batch)
    torch.testing.assert_close(a.h, b.h)
    torch.testing.assert_close(a.levels[0]["cls"], b.levels[0]["cls"])


@pytest.mark.parametrize("name", METHODS)
def test_cached_features_give_what_frames_give(name, backbone_state):
    model = tiny_model(name, backbone_state).eval()
    if not model.cacheable:
        pytest.skip(f"{name} is not cacheable (backbone gradient or hooks)")
    items = make_items(model)
    with torch.no_grad():
        from_frames = model(batch_of(items))
        for it in items:   # what the feature cache stores: {point: (T, L, N, D)} per video
            it["video"] = {k: v[0] for k, v in model.video_layer_tokens(it["video"][None]).items()}
            it["source"] = "features"
        from_cache = model(batch_of(items))
    real = from_frames.video_mask
    torch.testing.assert_close(from_cache.h[real], from_frames.h[real], atol=1e-5, rtol=1e-4)


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
    model = TransferModel(backbone, HeadConfig(k=1, **SMALL_HEAD), backbone_grad=True, hooks=Adapter(backbone.video_width))
    assert "hooks.scale" in model.learnable_state_dict()
    assert count_params(model) == count_params(model.head) + backbone.video_width
    with torch.no_grad():
        assert math.isfinite(float(model(batch_of(make_items(model))).h.sum()))
