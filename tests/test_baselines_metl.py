"""The memory-efficient side networks of Table 9 (E3VA, LoSA, LST): exact parameter counts at the
paper's ViT-B/32, cacheability through the real feature cache, what each hands the head at
init, and how each treats frames (LoSA mixes them, respecting padding; E3VA and LST do not)."""
import pytest
import torch
import torch.nn.functional as F

from r2bench.bench.run import paper_params
from r2bench.datasets.vtg import collate
from r2bench.methods.backbone import Backbone
from r2bench.methods.hooks import Taps
from r2bench.methods.model import LayerTokens
from r2bench.methods.registry import build_model
from tests.tiny_models import HEAD_PARAMS as HEAD, SMALL_HEAD, random_backbone_state, tiny, tiny_model
from tests.tiny_models import frame_items as items_for, neck_io, through_the_cache
from r2bench.methods.tuners.losa import TokenMixer

METL = ("e3va", "losa", "lst")


@pytest.fixture(scope="module")
def backbone_state():
    return random_backbone_state()


# ---- parameter counts at the paper's configuration --------------------------------------------
@pytest.mark.parametrize("name, overrides, extra, printed", [
    ("e3va", {}, 12 * 2 * (768 * 16 + 16 + 16 * 768 + 768) + 2 * 768, 3.3),           # 610,176
    ("e3va", {"e3va_bias": False}, 12 * 2 * 2 * 768 * 16 + 2 * 768, 3.3),             # 591,360
    ("losa", {}, 12 * (2 * 768 + 768 * 16 + 16 + (50 * 16 + 16 + 16 * 50 + 50)
                       + (75 * 16 + 16 + 16 * 75 + 75) + 16 * 768 + 768), 3.1),        # 372,636
    ("lst", {}, 2_376_492, 5.0),
    ("lst", {"lst_text": True}, 3_436_536, 6.0),
])
def test_exact_learnable_parameters_at_vit_b32(name, overrides, extra, printed):
    total, _ = paper_params(name, overrides)
    assert paper_params("frozen", {})[0] == HEAD
    assert total - HEAD == extra
    assert round(total / 2**20, 1) == printed


def test_lst_count_decomposes_into_ladders_blocks_gates_norm_and_upsampler():
    side, width, depth = 96, 768, 12
    block = 2 * side * 2 + (side * 3 * side + 3 * side) + (side * side + side) + (side * 4 * side + 4 * side) \
        + (4 * side * side + side)
    assert block == 111_840
    expected = depth * block + (depth + 1) * (width * side + side) + depth + 2 * side + (side * width + width)
    assert expected == 2_376_492 == paper_params("lst", {})[0] - HEAD


def test_paper_rows_that_match_and_those_that_do_not():
    """E3VA reproduces the paper's 3.3; LoSA (4.8) and LST (7.4) do not, as documented."""
    assert round(paper_params("e3va", {})[0] / 2**20, 1) == 3.3
    assert round(paper_params("losa", {})[0] / 2**20, 1) != 4.8
    assert round(paper_params("lst", {})[0] / 2**20, 1) != 7.4


def test_a_side_network_hands_the_head_one_layer():
    for name in METL:
        with pytest.raises(ValueError, match="k must be 1"):
            with torch.device("meta"):
                build_model(name, Backbone("ViT-B-32", device="meta"), {"k": 2})


# ---- taps and the feature cache ---------------------------------------------------------------
def test_taps_can_narrow_a_point_to_some_layers():
    taps = Taps(range(4), ("attn", "mlp", "block"), {"block": (3,)})
    assert taps.layers_of("attn") == (0, 1, 2, 3) and taps.layers_of("block") == (3,)
    assert taps.describe()["point_layers"] == {"block": [3]}
    assert Taps((0, 1)).describe() == {"layers": [0, 1], "points": ["block"]}   # cache keys unchanged
    for bad in (dict(layers=(0, 1), points=("attn",), point_layers={"block": (1,)}),
                dict(layers=(0, 1), points=("block",), point_layers={"block": (2,)}),
                dict(layers=(-1, 0), points=("block", "mlp"), point_layers={"block": (0,)})):
        with pytest.raises(ValueError):
            Taps(**bad)


@pytest.mark.parametrize("name, shapes", [
    ("e3va", {"attn": 6, "mlp": 6, "block": 1}),
    ("losa", {"block": 6}),
    ("lst", {"block": 7}),          # the embeddings (x_0) and every block
])
def test_what_each_method_taps(name, shapes, backbone_state):
    model = tiny(name, backbone_state)
    assert model.cacheable and model.hooks is None and not model.backbone_grad
    frames = items_for(model)[0]["video"]
    out = model.backbone.video_tokens(frames, model.video_taps)
    assert {p: v.shape[1] for p, v in out.items()} == shapes
    for v in out.values():   # one layer is a contiguous view: a side network reads it without a copy
        assert v[:, 0].is_contiguous()


@pytest.mark.parametrize("name", METL)
def test_features_through_the_cache_give_what_frames_give(name, backbone_state, tmp_path):
    model = tiny(name, backbone_state)
    items = items_for(model)
    with torch.no_grad():
        from_frames = model(collate(items, fps=0.5))

    cached = through_the_cache(model, items, tmp_path, name)
    assert all(v.dtype == torch.float16 for it in cached for v in it["video"].values())
    with torch.no_grad():
        from_cache = model(collate(cached, fps=0.5))
    real = from_frames.video_mask
    torch.testing.assert_close(from_cache.h[real], from_frames.h[real], atol=2e-2, rtol=2e-2)


# ---- what each method starts as -------------------------------------------------------------------
def test_e3va_starts_as_a_layer_norm_of_the_frozen_last_layer(backbone_state):
    model = tiny("e3va", backbone_state)
    tokens, out = neck_io(model, collate(items_for(model), fps=0.5))
    last = tokens.video["block"][:, :, -1]
    assert out.video["block"].shape == (2, 7, 1, 17, 128)
    torch.testing.assert_close(out.video["block"][:, :, 0], F.layer_norm(last, (128,)))
    assert out.text["block"] is tokens.text["block"]


@pytest.mark.parametrize("name, use_tef, exact", [("e3va", False, False), ("losa", True, True)])
def test_at_init_the_head_sees_what_w_o_tuning_feeds_it(name, use_tef, exact, backbone_state):
    """Same head weights: E3VA's output (a LayerNorm of x_L, which the head's own input
    LayerNorm absorbs) and LoSA's (x_L exactly) give the frozen model's predictions."""
    model = tiny(name, backbone_state, use_tef=use_tef)
    frozen = tiny("frozen", backbone_state, use_tef=use_tef)
    frozen.head.load_state_dict(model.head.state_dict())
    batch = collate(items_for(model), fps=0.5)
    with torch.no_grad():
        a, b = model(batch), frozen(batch)
    real = a.video_mask
    if exact:
        torch.testing.assert_close(a.h[real], b.h[real])
    else:
        torch.testing.assert_close(a.h[real], b.h[real], atol=1e-4, rtol=1e-4)


def test_losa_starts_as_the_frozen_last_layer(backbone_state):
    model = tiny("losa", backbone_state)
    tokens, out = neck_io(model, collate(items_for(model), fps=0.5))
    assert torch.equal(out.video["block"][:, :, 0], tokens.video["block"][:, :, -1])


def test_lst_gates_start_at_one_half_and_steer_the_ladder(backbone_state):
    """μ = σ(α/T) = 0.5 at init; μ → 1 keeps only the side state (the ladders from the blocks
    are ignored), μ → 0 keeps only the newest ladder (x_0 and older blocks are ignored)."""
    model = tiny("lst", backbone_state)
    ladder = model.neck.video
    assert torch.equal(ladder.gate_values(), torch.full((6,), 0.5))
    tokens, _ = neck_io(model, collate(items_for(model), fps=0.5))
    layers = tokens.video["block"].flatten(0, 1)                  # frames, x_0 + 6 blocks, N, D
    noisy_blocks, noisy_early = layers.clone(), layers.clone()
    noisy_blocks[:, 1:] += torch.randn_like(layers[:, 1:])
    noisy_early[:, :-1] += torch.randn_like(layers[:, :-1])
    with torch.no_grad():
        ladder.gates.fill_(100.0)                                  # μ = 1
        torch.testing.assert_close(ladder(noisy_blocks), ladder(layers))
        ladder.gates.fill_(-100.0)                                 # μ = 0
        torch.testing.assert_close(ladder(noisy_early), ladder(layers))
        ladder.gates.zero_()
        assert not torch.allclose(ladder(noisy_early), ladder(layers))


def test_lst_text_ladder_is_causal_and_optional(backbone_state):
    plain = tiny("lst", backbone_state)
    model = tiny("lst", backbone_state, lst_text=True)
    assert plain.text_taps.layers == (5,) and model.text_taps.layers == tuple(range(-1, 6))
    batch = collate(items_for(model), fps=0.5)
    tokens, out = neck_io(model, batch)
    text = out.text["block"]
    assert text.shape == (2, 1, batch["text_ids"].shape[1], 128)
    longer = dict(batch, text_ids=F.pad(batch["text_ids"], (0, 4)))   # padding after end-of-text
    _, padded = neck_io(model, longer)
    torch.testing.assert_close(padded.text["block"][:, :, :text.shape[2]], text)


# ---- frames: mixed by LoSA only, and never through padding --------------------------------------
def _randomise_outputs(model):
    """Give the zero-initialised up-projections weights, as training would."""
    g = torch.Generator().manual_seed(1)
    for name, p in model.neck.named_parameters():
        if name.endswith(("up.weight", "up.bias")):
            p.data = torch.randn(p.shape, generator=g) * 0.1


@pytest.mark.parametrize("name, mixes_frames", [("losa", True), ("e3va", False), ("lst", False)])
def test_which_methods_mix_frames(name, mixes_frames, backbone_state):
    model = tiny(name, backbone_state)
    _randomise_outputs(model)
    items = items_for(model)
    batch = collate(items, fps=0.5)
    tokens, out = neck_io(model, batch)
    video = {p: v.clone() for p, v in tokens.video.items()}
    g = torch.Generator().manual_seed(2)
    for v in video.values():
        v[0, 0] += torch.randn(v[0, 0].shape, generator=g)         # change frame 0 of video 0
    changed = model.neck(LayerTokens(video, tokens.video_mask, tokens.text, tokens.text_mask))
    later = (changed.video["block"][0, 3:] - out.video["block"][0, 3:]).abs().max()
    assert (later > 1e-3) == mixes_frames


@pytest.mark.parametrize("name", METL)
def test_padded_frames_never_reach_real_frames_even_when_trained(name, backbone_state):
    model = tiny(name, backbone_state)
    _randomise_outputs(model)
    long, short = items_for(model, lengths=(7, 4))
    together = collate([long, short], fps=0.5)
    tokens, out = neck_io(model, together)
    noisy = {p: v.clone() for p, v in tokens.video.items()}
    for v in noisy.values():
        v[1, 4:] = torch.randn_like(v[1, 4:]) * 10                 # garbage in the short video's padding
    with torch.no_grad():
        changed = model.neck(LayerTokens(noisy, tokens.video_mask, tokens.text, tokens.text_mask))
        alone = model(collate([short], fps=0.5))
        both = model(together)
    torch.testing.assert_close(changed.video["block"][1, :4], out.video["block"][1, :4])
    torch.testing.assert_close(both.h[1, :4], alone.h[0], atol=1e-5, rtol=1e-4)


def test_losa_temporal_mixer_is_the_mixer_on_zero_padded_frames():
    torch.manual_seed(0)
    mixer = TokenMixer(10, 4)
    x = torch.randn(3, 6)
    padded = mixer(F.pad(x, (0, 4)))
    torch.testing.assert_close(mixer(x), padded[:, :6])
    with pytest.raises(ValueError, match="at most 10 frames"):
        mixer(torch.randn(3, 11))


def test_losa_refuses_videos_longer_than_its_temporal_mixer(backbone_state):
    model = tiny("losa", backbone_state, losa_max_frames=6)
    with torch.no_grad(), pytest.raises(ValueError, match="losa_max_frames"):
        model(collate(items_for(model, lengths=(7, 5)), fps=0.5))
