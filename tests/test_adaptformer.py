"""AdaptFormer, the method added by following docs/architecture.md: its count, and that it starts
as frozen CLIP (zero up-projections) and then changes the tokens."""
import torch

from r2bench.bench.run import paper_params
from r2bench.methods.backbone import Backbone
from r2bench.methods.registry import build_model


def test_count_at_vit_b32():
    params, _ = paper_params("adaptformer", {})
    assert params - 2_836_236 == 12 * (768 * 64 + 64 + 64 * 768 + 768) == 1_189_632


def test_starts_as_frozen_clip_and_adapts_after_a_change():
    torch.manual_seed(0)
    backbone = Backbone("R2Bench-Tiny")
    model = build_model("adaptformer", backbone, {"hidden": 32, "heads": 4, "ffn": 64}).eval()
    images = torch.randn(3, 3, backbone.image_size, backbone.image_size)
    with torch.no_grad():
        plain = backbone.video_tokens(images, model.video_taps)["block"]
        adapted = backbone.video_tokens(images, model.video_taps, hooks=model.hooks)["block"]
        torch.testing.assert_close(adapted, plain)
        for up in model.hooks.up:
            up.weight.normal_(0, 0.1)
        changed = backbone.video_tokens(images, model.video_taps, hooks=model.hooks)["block"]
    assert (changed - plain).abs().max() > 1e-3
