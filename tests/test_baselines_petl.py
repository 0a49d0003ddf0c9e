"""The Table 9 baselines that train through CLIP: Full-Tuning, LoRA, VPT, VoP, ST-Adapter.

Exact parameter counts at the paper's ViT-B/32 (meta device); LoRA leaves the frozen CLIP
weights bit-identical and applies each attention delta once; prompts are inserted, replaced
and stripped where the methods put them; ST-Adapter is the identity at initialisation and
padded frames never reach real ones; full tuning's learning-rate groups.
"""
import math

import pytest
import torch
from torch import nn

from r2bench.bench.run import paper_params
from r2bench.bench.train import TrainConfig, build_optimizer, make_step_state, train_step
from r2bench.datasets.vtg import collate
from r2bench.methods.hooks import Taps, TowerContext
from r2bench.methods.contract import make_items
from tests.tiny_models import random_backbone_state, tiny_model
from r2bench.methods.tuners.lora import LORA_TARGETS
from r2bench.methods.tuners.vop import VARIANTS, ContextModule

HEAD = 2_836_236            # the shared head with K = 1 at ViT-B/32 ("w/o Tuning")
SMALL_HEAD = dict(hidden=32, heads=4, ffn=64, dropout=0.1)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def backbone_state():
    return random_backbone_state()


def tiny(name, backbone_state, seed=0, **overrides):
    return tiny_model(name, backbone_state, SMALL_HEAD, seed, **overrides)


def items(model, lengths=(8, 5), seed=0):
    """Videos of these lengths as frames, with saliency on clips 1-2 (the contract's items)."""
    return make_items(model, lengths, seed=seed)


def batch(model, lengths=(8, 5), seed=0):
    return collate(items(model, lengths, seed), fps=0.5)


# ---- parameter counts at the paper's backbone -------------------------------------------------
@pytest.mark.parametrize("method, overrides, extra, paper", [
    ("full", {}, 151_277_313, 147.0),
    ("lora", {}, 1_474_560, None),
    ("lora", {"lora_targets": "attn_both"}, 1_474_560, None),
    ("lora", {"lora_targets": "visual_attn"}, 884_736, None),
    ("lora", {"lora_targets": "visual_all"}, 2_359_296, None),
    ("vpt", {}, 92_160, 2.8),
    ("vop", {}, 14_327_040, None),
    ("vop", {"vop_variant": "basic"}, 122_880, None),
    # VoP's own Table 1 percentages of its 119.8 M "Full", frame embedding left out (12 frames):
    ("vop", {"vop_variant": "C", "vop_max_frames": 12}, 14_257_152, None),         # 11.898 %
    ("vop", {"vop_variant": "P", "vop_max_frames": 12}, 528_384, None),            # 0.441 %
    ("vop", {"vop_variant": "F+P", "vop_max_frames": 12}, 393_216 + 12 * 768, None),  # 0.328 %
    ("st_adapter", {}, 7_110_144, None),
    ("st_adapter", {"st_adapter_points": "attn_mlp"}, 14_220_288, None),
    ("st_adapter", {"st_adapter_bottleneck": 512}, 9_477_120, None),
])
def test_exact_parameter_counts_at_vit_b32(method, overrides, extra, paper):
    learnable, clip = paper_params(method, overrides)
    assert learnable - HEAD == extra
    if paper is not None:   # the rows whose count the paper's printed precision must match
        assert round(learnable / 2**20, 1) == paper
    assert clip >= 151_277_313   # the whole CLIP is there (plus any adapters injected into it)


def test_lora_default_is_within_ten_percent_of_the_paper():
    learnable, _ = paper_params("lora", {})
    assert abs(learnable / 2**20 - 4.4) / 4.4 < 0.10


# ---- full tuning ----------------------------------------------------------------------------
@pytest.mark.parametrize("scale", [0.01, 1.0])
def test_full_tuning_trains_clip_in_its_own_learning_rate_group(backbone_state, scale):
    model = tiny("full", backbone_state, backbone_lr_scale=scale).train()
    cfg = TrainConfig(lr=1e-3)
    groups = {g["name"]: g for g in build_optimizer(model, cfg).param_groups}
    assert set(groups) == {"backbone", "head"}
    clip = {id(p) for p in model.backbone.parameters()}
    assert {id(p) for p in groups["backbone"]["params"]} == clip
    assert {id(p) for p in groups["head"]["params"]} == {id(p) for p in model.head.parameters()}
    assert groups["backbone"]["lr"] == pytest.approx(1e-3 * scale) and groups["head"]["lr"] == pytest.approx(1e-3)

    before = {n: p.detach().clone() for n, p in model.backbone.named_parameters()}
    train_step(model, batch(model), make_step_state(model, cfg, CPU))
    changed = {n for n, p in model.backbone.named_parameters() if not torch.equal(p, before[n])}
    assert "clip.visual.transformer.resblocks.0.mlp.c_fc.weight" in changed
    assert "clip.transformer.resblocks.0.attn.in_proj_weight" in changed
    unread = {"clip.visual.proj", "clip.text_projection", "clip.logit_scale", "clip.ln_final.weight"}
    assert not unread & changed      # the head reads pre-projection tokens: these get no gradient


# ---- LoRA -----------------------------------------------------------------------------------
@pytest.mark.parametrize("targets", sorted(LORA_TARGETS))
def test_lora_keeps_frozen_clip_weights_bit_identical_over_steps(backbone_state, targets):
    model = tiny("lora", backbone_state, lora_targets=targets).train()
    frozen = {n: p.detach().clone() for n, p in model.backbone.named_parameters() if not p.requires_grad}
    adapters = {n: p.detach().clone() for n, p in model.backbone.named_parameters() if p.requires_grad}
    assert adapters and all("lora_" in n for n in adapters)
    state = make_step_state(model, TrainConfig(lr=1e-2), CPU)
    b = batch(model)
    for _ in range(4):   # after the first step lora_B ≠ 0, so every later forward applies a real delta
        train_step(model, b, state)
    after = {n: p for n, p in model.backbone.named_parameters() if not p.requires_grad}
    assert after.keys() == frozen.keys()
    drifted = [n for n in frozen if not torch.equal(after[n], frozen[n])]
    assert not drifted, f"frozen CLIP weights changed: {drifted[:3]}"
    trained = dict(model.backbone.named_parameters())
    assert all(not torch.equal(trained[n], adapters[n]) for n in adapters if "lora_B" in n)


def test_lora_attention_adapter_applies_its_delta_once(backbone_state):
    model = tiny("lora", backbone_state, lora_targets="visual_attn").eval()
    layer = model.backbone.video_blocks[0].attn
    base, out_proj = layer.get_base_layer(), layer.get_base_layer().out_proj
    torch.manual_seed(1)
    with torch.no_grad():
        for p in (layer.lora_B["default"].weight, out_proj.lora_B["default"].weight):
            p.normal_(std=0.05)
    width = base.embed_dim
    reference = nn.MultiheadAttention(width, base.num_heads, batch_first=True)
    scale = layer.scaling["default"]
    with torch.no_grad():
        reference.in_proj_weight.copy_(base.in_proj_weight
                                       + scale * layer.lora_B["default"].weight @ layer.lora_A["default"].weight)
        reference.in_proj_bias.copy_(base.in_proj_bias)
        reference.out_proj.weight.copy_(out_proj.base_layer.weight
                                        + scale * out_proj.lora_B["default"].weight @ out_proj.lora_A["default"].weight)
        reference.out_proj.bias.copy_(out_proj.base_layer.bias)
        x = torch.randn(2, 7, width)
        torch.testing.assert_close(layer(x, x, x, need_weights=False)[0],
                                   reference(x, x, x, need_weights=False)[0], atol=1e-5, rtol=1e-5)


# ---- VPT ------------------------------------------------------------------------------------
def _ln1_inputs(blocks):
    """Record the shape of what enters each block's attention (after block_input)."""
    shapes, handles = {}, []

    def record(i):
        def hook(module, inputs):
            shapes.setdefault(i, inputs[0].shape)
        return hook
    for i, block in enumerate(blocks):
        handles.append(block.ln_1.register_forward_pre_hook(record(i)))
    return shapes, handles


def test_vpt_inserts_replaces_and_strips_prompts(backbone_state):
    model = tiny("vpt", backbone_state)
    hooks, p = model.hooks, model.hooks.count
    bb = model.backbone
    n, length, d = 3, bb.tokens_per_frame, bb.video_width
    patch = bb.clip.visual.patch_size[0]
    assert hooks.prompts.abs().max() <= math.sqrt(6 / (3 * patch * patch + d))
    ctx = TowerContext("video", bb.depth, frames_per_video=n)
    x = torch.randn(n, length, d)
    y = hooks.block_input(0, x, ctx)
    assert y.shape == (n, 1 + p + length - 1, d)
    torch.testing.assert_close(y[:, 1:1 + p], hooks.prompts[0].expand(n, -1, -1))
    torch.testing.assert_close(y[:, :1], x[:, :1])
    torch.testing.assert_close(y[:, 1 + p:], x[:, 1:])
    z = hooks.block_input(3, y + 1.0, ctx)                      # later blocks replace the prompts
    torch.testing.assert_close(z[:, 1:1 + p], hooks.prompts[3].expand(n, -1, -1))
    torch.testing.assert_close(z[:, 1 + p:], y[:, 1 + p:] + 1.0)
    torch.testing.assert_close(hooks.tap(3, "block", z, ctx), torch.cat([z[:, :1], z[:, 1 + p:]], dim=1))

    shapes, handles = _ln1_inputs(bb.video_blocks)
    frames = torch.randn(2, 4, 3, bb.image_size, bb.image_size)
    with torch.no_grad():
        out = model.video_layer_tokens(frames)["block"]
    for h in handles:
        h.remove()
    assert out.shape == (2, 4, 1, length, d)                   # prompts stripped before the head
    assert all(shapes[i] == (8, length + p, d) for i in range(bb.depth))


# ---- VoP ------------------------------------------------------------------------------------
def test_vop_frame_and_video_level_prompts_have_the_papers_layout(backbone_state):
    model = tiny("vop", backbone_state)                         # VoP^{F+C}
    bb, hooks = model.backbone, model.hooks
    length, d, p = bb.tokens_per_frame, bb.video_width, hooks.count
    b, t = 2, 5
    shapes, handles = _ln1_inputs(bb.video_blocks)
    frames = torch.randn(b, t, 3, bb.image_size, bb.image_size)
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    with torch.no_grad():
        out = model.video_layer_tokens(frames, mask)["block"]
    for h in handles:
        h.remove()
    assert out.shape == (b, t, 1, length, d)
    assert hooks.frame_layers == bb.depth - 4
    for i in range(hooks.frame_layers):                          # per frame: CLS, 4 static + 4 context, patches
        assert shapes[i] == (b * t, length + p, d)
    for i in range(hooks.frame_layers, bb.depth):                # per video: 8 prompts + every frame's tokens
        assert shapes[i] == (b, p + t * length, d)


def test_vop_text_prompts_follow_start_and_precede_end_of_text(backbone_state):
    model = tiny("vop", backbone_state, vop_variant="basic")
    bb, hooks, p = model.backbone, model.hooks, model.hooks.count
    ids = bb.tokenize(["a red circle", "a much longer query about a square"])
    ids = ids[:, : int(ids.argmax(-1).max()) + 1]
    eot = ids.argmax(-1)
    mask = torch.arange(ids.shape[1])[None] <= eot[:, None]
    ctx = TowerContext("text", len(bb.text_blocks), text_mask=mask)
    x = torch.randn(*ids.shape, bb.text_width)
    y = hooks.block_input(0, x, ctx)
    assert y.shape == (2, ids.shape[1] + p, bb.text_width)
    prompts = hooks.text_prompts[0]
    for row, e in enumerate(eot.tolist()):
        torch.testing.assert_close(y[row, 0], x[row, 0])                         # start of text
        torch.testing.assert_close(y[row, 1:1 + p // 2], prompts[: p // 2])      # prefix
        torch.testing.assert_close(y[row, e + p // 2:e + p], prompts[p // 2:])   # suffix, just before EOT
        torch.testing.assert_close(y[row, e + p], x[row, e])                     # end of text
    torch.testing.assert_close(hooks.tap(0, "block", y, ctx), x)                 # stripping restores the order

    text, _ = model.text_layer_tokens(ids)                                       # through the tower
    out = text["block"][:, -1]
    assert out.shape == (2, ids.shape[1], bb.text_width)
    row, e = 1, int(eot[1])
    suffix_grad = torch.autograd.grad(out[row, e].sum(), hooks.text_prompts, retain_graph=True)[0]
    assert suffix_grad[:, p // 2:].abs().sum() > 0                               # the suffix reaches EOT …
    word_grad = torch.autograd.grad(out[row, e - 1].sum(), hooks.text_prompts)[0]
    assert word_grad[:, p // 2:].abs().sum() == 0                                # … and no earlier token
    assert word_grad[:, : p // 2].abs().sum() > 0


def test_vop_context_module_is_a_bilstm_that_ignores_padded_frames():
    torch.manual_seed(0)
    width, hidden, count = 12, 6, 2
    module = ContextModule(width, hidden, count)
    reference = nn.LSTM(width, hidden, batch_first=True, bidirectional=True)
    with torch.no_grad():
        for name, _ in module.forward_lstm.named_parameters():
            getattr(reference, name).copy_(getattr(module.forward_lstm, name))
            getattr(reference, name + "_reverse").copy_(getattr(module.backward_lstm, name))
    cls = torch.randn(2, 5, width)
    with torch.no_grad():
        expected = module.fc(reference(cls)[0]).reshape(10, count, width)
        torch.testing.assert_close(module(cls, None), expected)
        mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
        padded = cls.clone()
        padded[1, 3:] = torch.randn(2, width) * 10
        alone = module(cls[1:, :3], None)
        torch.testing.assert_close(module(padded, mask).reshape(2, 5, count, width)[1, :3],
                                   alone.reshape(3, count, width))


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_vop_variant_trains_and_keeps_padding_out(backbone_state, variant):
    model = tiny("vop", backbone_state, vop_variant=variant, vop_max_frames=16).train()
    step = make_step_state(model, TrainConfig(lr=1e-2), CPU)
    train_step(model, batch(model), step)
    assert all(p.grad is not None for p in model.hooks.parameters() if p.numel())
    model.eval()
    long, short = items(model)
    with torch.no_grad():
        together = model(collate([long, short], fps=0.5))
        alone = model(collate([short], fps=0.5))
    torch.testing.assert_close(together.h[1, :5], alone.h[0], atol=1e-5, rtol=1e-4)


def test_vop_refuses_more_frames_than_it_has_positions_for(backbone_state):
    model = tiny("vop", backbone_state, vop_max_frames=4)
    frames = torch.randn(1, 6, 3, model.backbone.image_size, model.backbone.image_size)
    with pytest.raises(ValueError, match="vop_max_frames"):
        model.video_layer_tokens(frames)


# ---- ST-Adapter -----------------------------------------------------------------------------
@pytest.mark.parametrize("points", ["mlp", "attn_mlp"])
def test_st_adapter_is_the_identity_at_initialisation(backbone_state, points):
    model = tiny("st_adapter", backbone_state, st_adapter_points=points)
    frames = torch.randn(2, 4, 3, model.backbone.image_size, model.backbone.image_size)
    with torch.no_grad():
        adapted = model.video_layer_tokens(frames)["block"]
        plain = model.backbone.video_tokens(frames.flatten(0, 1), model.video_taps)["block"].unflatten(0, (2, 4))
    torch.testing.assert_close(adapted, plain, atol=0, rtol=0)


def test_st_adapter_mixes_neighbouring_frames_but_never_padded_ones(backbone_state):
    model = tiny("st_adapter", backbone_state).eval()
    torch.manual_seed(3)
    with torch.no_grad():
        for p in model.hooks.parameters():       # trained-like adapters: the conv now mixes frames
            p.normal_(std=0.1)
    size = model.backbone.image_size
    frames = torch.randn(2, 6, 3, size, size)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    frames[1, 4:] = 0.0
    noisy = frames.clone()
    noisy[1, 4:] = torch.randn(2, 3, size, size) * 5      # change only the padded frames
    with torch.no_grad():
        base = model.video_layer_tokens(frames, mask)["block"]
        torch.testing.assert_close(model.video_layer_tokens(noisy, mask)["block"][1, :4], base[1, :4],
                                   atol=1e-5, rtol=1e-4)
        alone = model.video_layer_tokens(frames[1:, :4], mask[1:, :4])["block"]
        torch.testing.assert_close(base[1, :4], alone[0], atol=1e-5, rtol=1e-4)
        moved = frames.clone()
        moved[0, 2] = torch.randn(3, size, size)            # a real neighbour does change frame 3
        changed = model.video_layer_tokens(moved, mask)["block"]
    assert (changed[0, 3] - base[0, 3]).abs().max() > 1e-3
    torch.testing.assert_close(changed[1], base[1])         # … and nothing in the other video


def test_st_adapter_rejects_rows_that_are_not_whole_videos(backbone_state):
    model = tiny("st_adapter", backbone_state)
    x = torch.randn(5, model.backbone.tokens_per_frame, model.backbone.video_width)
    ctx = TowerContext("video", model.backbone.depth, frames_per_video=2)
    with pytest.raises(ValueError, match="whole videos"):
        model.hooks.mlp_input(0, x, ctx)


def test_taps_of_every_block_keep_prompts_out(backbone_state):
    """A side network tapping all layers of a prompted backbone still sees CLS + patches only."""
    model = tiny("vop", backbone_state)
    bb = model.backbone
    frames = torch.randn(3, 3, bb.image_size, bb.image_size)
    with torch.no_grad():
        out = bb.video_tokens(frames, Taps(tuple(range(bb.depth)), ("block", "attn", "mlp")), hooks=model.hooks,
                              frames_per_video=3)
    assert all(v.shape == (3, bb.depth, bb.tokens_per_frame, bb.video_width) for v in out.values())
