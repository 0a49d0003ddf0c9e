"""Side4Video and DiST, the two memory-efficient side networks beyond Table 9: exact parameter
counts at ViT-B/32, what they tap, what they hand the head (shape, and at init), how they treat
frames (mixed, never through padding, BatchNorm statistics from real frames only), one training
step, and the feature cache."""
import pytest
import torch

from r2bench.bench.run import paper_params
from r2bench.bench.train import TrainConfig, make_step_state, train_step
from r2bench.datasets.vtg import collate
from r2bench.methods.backbone import Backbone
from r2bench.methods.model import LayerTokens
from r2bench.methods.registry import build_model, get_method
from r2bench.methods.tuners.side4video import MaskedBatchNorm, shift_token
from tests.tiny_models import HEAD_PARAMS as HEAD, SMALL_HEAD, random_backbone_state, tiny, tiny_model
from tests.tiny_models import frame_items as items_for, neck_io, through_the_cache

SIDE = ("side4video", "dist")


@pytest.fixture(scope="module")
def backbone_state():
    return random_backbone_state()


def randomise_outputs(model):
    """Give the zero-initialised output projection weights, as training would."""
    if model.neck.proj.abs().sum() == 0:
        with torch.no_grad():
            model.neck.proj.normal_(0, 0.1, generator=torch.Generator().manual_seed(1))


# ---- parameter counts at the paper's configuration ----------------------------------------------
def test_side4video_count_at_vit_b32():
    width, side, depth, tokens = 768, 320, 12, 50
    block = (2 * side) + (side * side + side) + (3 * side + side) + (side * side + side) + 2 * side \
        + (3 * side * side + 3 * side + side * side + side) + 2 * side + (side * 4 * side + 4 * side + 4 * side * side + side)
    assert block == 1_440_320
    stem = width * side * 3 + side + 2 * side
    per_layer = 2 * width + (width * side + side) + block
    extra = stem + depth * per_layer + tokens * side + 2 * side + side * width
    total, _ = paper_params("side4video", {})
    assert total - HEAD == extra == 21_255_872
    assert total == 24_092_108 and round(total / 2**20, 3) == 22.976


def test_dist_count_at_vit_b32():
    width, c, ct, depth, frames = 768, 384, 96, 12, 75
    temporal_net = 2 * ct + (ct * ct * 3 + ct) + (ct * ct * 9 + ct)
    integration = 2 * c + 2 * (c * c + c) + 2 * c + (c * ct + ct) + (ct * ct * 3 + ct) + (ct * c + c)
    per_layer = (width * c + c) + temporal_net + (ct * c + c) + frames * c + integration
    extra = (width * ct * 5 + ct) + depth * per_layer + (depth - 1) * (c * ct + ct) + (width * c + c) + 2 * c + c * width
    total, _ = paper_params("dist", {})
    assert total - HEAD == extra == 11_824_128
    assert total == 14_660_364 and round(total / 2**20, 3) == 13.981
    assert paper_params("dist", {"dist_max_frames": 150})[0] - total == depth * 75 * c   # per-frame class tokens


@pytest.mark.parametrize("name", SIDE)
def test_registered_as_metl_and_a_side_network_hands_the_head_one_layer(name):
    assert get_method(name).category == "METL"
    with pytest.raises(ValueError, match="k must be 1"):
        with torch.device("meta"):
            build_model(name, Backbone("ViT-B-32", device="meta"), {"k": 2})


# ---- taps, shapes, init ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", SIDE)
def test_taps_the_embeddings_and_every_block_and_hands_the_head_clip_width_tokens(name, backbone_state):
    model = tiny(name, backbone_state)
    assert model.cacheable and model.hooks is None and not model.backbone_grad
    assert model.video_taps.layers == tuple(range(-1, 6)) and model.video_taps.points == ("block",)
    assert model.text_taps.layers == (5,)                               # text: frozen CLIP, last layer
    tokens, out = neck_io(model, collate(items_for(model), fps=0.5))
    assert tokens.video["block"].shape == (2, 7, 7, 17, 128)            # embeddings + 6 blocks, 1 + 16 tokens
    assert out.video["block"].shape == (2, 7, 1, 17, 128)
    assert out.text["block"] is tokens.text["block"]


def test_side4video_side_state_is_320_wide_on_the_patches_and_starts_as_the_frozen_last_layer(backbone_state):
    model = tiny("side4video", backbone_state)
    seen = {}
    model.neck.post_norm.register_forward_hook(lambda m, i, o: seen.update(side=o.shape))
    tokens, out = neck_io(model, collate(items_for(model), fps=0.5))
    assert seen["side"] == (2, 7, 16, 320)                              # patches only: no class token of its own
    assert len(model.neck.blocks) == 6 and model.neck.blocks[0].attn.num_heads == 5
    assert torch.equal(out.video["block"][:, :, 0], tokens.video["block"][:, :, -1])   # side_proj = 0


def test_side4video_adds_the_side_state_per_patch_and_its_average_to_the_class_token(backbone_state):
    model = tiny("side4video", backbone_state)
    randomise_outputs(model)
    seen = {}
    model.neck.post_norm.register_forward_hook(lambda m, i, o: seen.update(side=o))
    tokens, out = neck_io(model, collate(items_for(model), fps=0.5))
    delta = seen["side"] @ model.neck.proj
    fused = out.video["block"][:, :, 0] - tokens.video["block"][:, :, -1]
    torch.testing.assert_close(fused[:, :, 1:], delta)
    torch.testing.assert_close(fused[:, :, 0], delta.mean(2))


def test_shift_token_takes_half_the_channels_from_each_neighbouring_frame():
    token = torch.arange(1, 5, dtype=torch.float)[None, :, None, None].expand(1, 4, 1, 4)   # frame t holds t + 1
    shifted = shift_token(token)[0, :, 0]
    assert shifted[:, :2].tolist() == [[2, 2], [3, 3], [4, 4], [0, 0]]    # from the next frame
    assert shifted[:, 2:].tolist() == [[0, 0], [1, 1], [2, 2], [3, 3]]    # from the previous frame


# ---- frames: mixed, never through padding -------------------------------------------------------------
@pytest.mark.parametrize("name", SIDE)
def test_mixes_frames(name, backbone_state):
    model = tiny(name, backbone_state)
    randomise_outputs(model)
    tokens, out = neck_io(model, collate(items_for(model), fps=0.5))
    video = {p: v.clone() for p, v in tokens.video.items()}
    video["block"][0, 0] += torch.randn(video["block"][0, 0].shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        changed = model.neck(LayerTokens(video, tokens.video_mask, tokens.text, tokens.text_mask))
    diff = (changed.video["block"] - out.video["block"]).abs().amax((2, 3, 4))        # per video and frame
    assert (diff[0, 1:3] > 1e-4).all()                  # frame 0 reaches its next frames (temporal layers)
    assert torch.equal(diff[1], torch.zeros_like(diff[1]))   # and never another video (eval: running statistics)


@pytest.mark.parametrize("name", SIDE)
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_padded_frames_never_reach_real_frames(name, training, backbone_state):
    """Garbage in the short video's padded frames changes nothing real — in training mode too, where
    Side4Video's BatchNorms take batch statistics (from real frames only)."""
    model = tiny(name, backbone_state)
    randomise_outputs(model)
    batch = collate(items_for(model, lengths=(7, 4)), fps=0.5)
    tokens, _ = neck_io(model, batch)
    noisy = {p: v.clone() for p, v in tokens.video.items()}
    noisy["block"][1, 4:] = torch.randn_like(noisy["block"][1, 4:]) * 10
    model.neck.train(training)
    with torch.no_grad():
        torch.manual_seed(0)
        a = model.neck(tokens).video["block"]
        torch.manual_seed(0)
        b = model.neck(LayerTokens(noisy, tokens.video_mask, tokens.text, tokens.text_mask)).video["block"]
    torch.testing.assert_close(b[0], a[0])
    torch.testing.assert_close(b[1, :4], a[1, :4])


def test_masked_batch_norm_is_batch_norm_on_real_frames():
    torch.manual_seed(0)
    bn, ref = MaskedBatchNorm(5).double(), torch.nn.BatchNorm1d(5).double()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5), bn.bias.normal_()
    ref.load_state_dict(bn.state_dict())
    x = torch.randn(2, 4, 3, 5, dtype=torch.double, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=torch.bool)
    y = bn(x, mask)
    # real frames: torch's BatchNorm over the real frames' tokens, running averages included
    torch.testing.assert_close(y[mask], ref(x[mask].reshape(-1, 5)).view(-1, 3, 5))
    torch.testing.assert_close(bn.running_mean, ref.running_mean)
    torch.testing.assert_close(bn.running_var, ref.running_var)
    assert int(bn.num_batches_tracked) == 1

    # every position, gradients included: the same normalisation written with autograd's ops
    def reference(x, weight, bias):
        keep = mask.double()[:, :, None, None]
        n = keep.sum() * x.shape[2]
        mean = (x * keep).sum((0, 1, 2)) / n
        var = ((x - mean) ** 2 * keep).sum((0, 1, 2)) / n
        return (x - mean) / torch.sqrt(var + bn.eps) * weight + bias

    g = torch.randn_like(y)
    ours = torch.autograd.grad(y, (x, bn.weight, bn.bias), g)
    theirs = torch.autograd.grad(reference(x, bn.weight, bn.bias), (x, bn.weight, bn.bias), g)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b)

    # every frame real: torch's BatchNorm, in training (gradients too) and in eval
    bn2, ref2 = MaskedBatchNorm(5).double(), torch.nn.BatchNorm1d(5).double()
    ref2.load_state_dict(bn2.state_dict())
    full = torch.ones(2, 4, dtype=torch.bool)
    y2, r2 = bn2(x, full), ref2(x.reshape(-1, 5)).view_as(x)
    torch.testing.assert_close(y2, r2)
    torch.testing.assert_close(*(torch.autograd.grad(t.square().sum(), x)[0] for t in (y2, r2)))
    bn2.eval(), ref2.eval()
    torch.testing.assert_close(bn2(x, full), ref2(x.reshape(-1, 5)).view_as(x))


def test_dist_refuses_videos_longer_than_its_class_tokens(backbone_state):
    model = tiny("dist", backbone_state, dist_max_frames=6)
    assert model.neck.cls_tokens.shape == (6, 6, 384) and len(model.neck.to_temporal) == 5
    with torch.no_grad(), pytest.raises(ValueError, match="dist_max_frames"):
        model(collate(items_for(model, lengths=(7, 5)), fps=0.5))


# ---- training and the feature cache -----------------------------------------------------------------
@pytest.mark.parametrize("name", SIDE)
def test_one_training_step_moves_the_side_network(name, backbone_state):
    model = tiny(name, backbone_state).train()
    before = {n: p.detach().clone() for n, p in model.neck.named_parameters()}
    losses = train_step(model, collate(items_for(model), fps=0.5),
                        make_step_state(model, TrainConfig(lr=1e-3), torch.device("cpu")))
    assert torch.isfinite(losses["total"])
    moved = [n for n, p in model.neck.named_parameters() if not torch.equal(p, before[n])]
    assert "proj" in moved and len(moved) > len(before) // 2


@pytest.mark.parametrize("name", SIDE)
def test_features_through_the_cache_give_what_frames_give(name, backbone_state, tmp_path):
    model = tiny(name, backbone_state)
    randomise_outputs(model)
    items = items_for(model)
    with torch.no_grad():
        from_frames = model(collate(items, fps=0.5))

    cached = through_the_cache(model, items, tmp_path, name)
    with torch.no_grad():
        from_cache = model(collate(cached, fps=0.5))
    real = from_frames.video_mask
    torch.testing.assert_close(from_cache.h[real], from_frames.h[real], atol=2e-2, rtol=2e-2)
