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


# shared by the side-network tests (tests/test_baselines_metl.py, tests/test_side4video_dist.py)
SMALL_HEAD = dict(hidden=32, heads=4, ffn=64, dropout=0.0, drop_path=0.0)
HEAD_PARAMS = 2_836_236      # the shared head (K = 1) at ViT-B/32: "w/o Tuning"


def tiny(name: str, backbone_state: dict, seed: int = 0, **overrides):
    """``tiny_model`` with the small deterministic head, in eval mode."""
    return tiny_model(name, backbone_state, SMALL_HEAD, seed, **overrides).eval()


def frame_items(model, lengths=(7, 5), seed=0) -> list[dict]:
    """Dataset items from random frames, one per length (frames), two queries."""
    g = torch.Generator().manual_seed(seed)
    size = model.backbone.image_size
    ids = model.backbone.tokenize(["a red circle", "a blue square moving"])
    return [dict(qid=i, vid=f"v{i}", query="q", duration=2.0 * t, source="frames",
                 video=torch.randn(t, 3, size, size, generator=g), text_ids=ids[i],
                 windows=torch.tensor([[2.0, 6.0]]), saliency=torch.ones(t)) for i, t in enumerate(lengths)]


def neck_io(model, batch):
    """What a method's neck receives (the tapped tokens) and what it hands the head."""
    with torch.no_grad():
        tokens = model.layer_tokens(batch)
        return tokens, model.neck(tokens)


def through_the_cache(model, items: list[dict], folder, name: str) -> list[dict]:
    """``items`` (frames) encoded by method ``name`` into a real ``FeatureCache`` under ``folder`` and read back, as
    the suite's cached rows read them."""
    from r2bench.datasets.features.cache import FeatureCache
    from r2bench.datasets.vtg import extract_features

    class Frames:
        def get(self, vid):
            return next(it["video"] for it in items if it["vid"] == vid)

    cache = FeatureCache(folder, {"method": name, "taps": model.video_taps.describe()})
    for it in items:
        cache.put(it["vid"], extract_features(it["vid"], Frames(), model, torch.device("cpu")))
    return [dict(it, video=cache.get(it["vid"]), source="features") for it in items]
