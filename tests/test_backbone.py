"""The backbone wrapper: taps equal open_clip's own intermediates; weights only from local files."""
import pytest
import torch
from safetensors.torch import save_file

from r2bench.methods.backbone import RANDOM_INIT, Backbone, BackboneError, trim_text_ids
from r2bench.methods.hooks import BlockHooks, Taps


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return Backbone("R2Bench-Tiny")


def test_video_and_text_taps_equal_open_clips_intermediates(tiny):
    images = torch.randn(3, 3, tiny.image_size, tiny.image_size)
    ids = tiny.tokenize(["a small red circle moving left", "a square"])
    with torch.no_grad():
        video = tiny.video_tokens(images, tiny.taps(4))["block"]
        text, mask = tiny.text_tokens(trim_text_ids(ids), tiny.taps(4))
        text = text["block"]
        ref = tiny.clip.forward_intermediates(image=images, text=ids, image_indices=4, text_indices=4,
                                              image_output_fmt="NLC", image_output_extra_tokens=True,
                                              intermediates_only=True)
    assert video.shape == (3, 4, tiny.tokens_per_frame, tiny.video_width)
    assert text.shape[:2] == (2, 4) and mask.shape == text.shape[::2][:1] + text.shape[2:3]
    for k in range(4):
        full = torch.cat([ref["image_intermediates_prefix"][k], ref["image_intermediates"][k]], 1)
        torch.testing.assert_close(video[:, k], full)
        n = text.shape[2]
        torch.testing.assert_close(text[:, k], ref["text_intermediates"][k][:, :n], atol=1e-5, rtol=1e-5)
    # the mask covers start-of-text … end-of-text of each query
    assert mask.sum(1).tolist() == [8, 4]


def test_hooks_see_every_point_of_every_block_and_can_change_the_taps(tiny):
    seen = []

    class Recorder(BlockHooks):
        towers = ("video",)

        def block_input(self, i, x, ctx):
            seen.append(("in", i, ctx.frames_per_video, ctx.frame_mask.shape))
            return x

        def attn_output(self, i, a, ctx):
            seen.append(("attn", i))
            return a

        def mlp_input(self, i, x, ctx):
            seen.append(("mid", i))
            return x

        def mlp_output(self, i, m, ctx):
            seen.append(("mlp", i))
            return m

        def block_output(self, i, x, ctx):
            seen.append(("out", i))
            return x

        def tap(self, i, point, x, ctx):
            return x[:, :1]  # e.g. strip inserted tokens

    images = torch.randn(4, 3, tiny.image_size, tiny.image_size)
    with torch.no_grad():
        out = tiny.video_tokens(images, tiny.taps(2), hooks=Recorder(), frames_per_video=2,
                                frame_mask=torch.tensor([[True, True], [True, False]]))
        tiny.text_tokens(tiny.tokenize(["a red circle"]), tiny.taps(1), hooks=Recorder())  # video-only hooks
    assert out["block"].shape == (4, 2, 1, tiny.video_width)
    expected = [e for i in range(tiny.depth) for e in
                (("in", i, 2, (2, 2)), ("attn", i), ("mid", i), ("mlp", i), ("out", i))]
    assert seen == expected


def test_attention_and_mlp_branches_add_up_to_the_block(tiny):
    images = torch.randn(2, 3, tiny.image_size, tiny.image_size)
    with torch.no_grad():
        out = tiny.video_tokens(images, Taps((2, 3), ("block", "attn", "mlp")))
        before = tiny.video_tokens(images, Taps((1, 2)))["block"]
    torch.testing.assert_close(before + out["attn"] + out["mlp"], out["block"], atol=1e-5, rtol=1e-5)


def test_inserted_text_tokens_get_a_causal_mask_of_the_new_length(tiny):
    class Prefix(BlockHooks):
        towers = ("text",)

        def __init__(self):
            super().__init__()
            self.prompt = torch.nn.Parameter(torch.randn(1, 3, tiny.text_width))

        def block_input(self, i, x, ctx):
            if i == 0:
                x = torch.cat([x[:, :1], self.prompt.expand(len(x), -1, -1), x[:, 1:]], 1)
            return x

        def tap(self, i, point, x, ctx):
            return torch.cat([x[:, :1], x[:, 4:]], 1)

    ids = tiny.tokenize(["a red circle", "a blue square moving left"])
    text, mask = tiny.text_tokens(trim_text_ids(ids), tiny.taps(2), hooks=Prefix())
    assert text["block"].shape[:3] == (2, 2, mask.shape[1])
    text["block"].sum().backward()   # the prompt takes part


def test_backbone_is_frozen_and_random_init_is_labelled(tiny):
    assert not any(p.requires_grad for p in tiny.parameters())
    assert tiny.weights_label == RANDOM_INIT and "random-init" in tiny.describe()


def test_local_weights_load_and_are_labelled_with_a_digest(tmp_path, tiny):
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in tiny.clip.state_dict().items()}, str(path))
    loaded = Backbone("R2Bench-Tiny", path)
    assert loaded.weights_label.startswith("tiny.safetensors#") and len(loaded.weights_label) > 20
    for (name, a), b in zip(tiny.clip.state_dict().items(), loaded.clip.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


@pytest.mark.parametrize("name, weights, message", [
    ("ViT-B-32", "openai", "hub tag"),
    ("ViT-B-32", "/nonexistent/ViT-B-32.pt", "no such file"),
    ("hf-hub:timm/ViT-B-32", None, "cannot be downloaded"),
    ("NoSuchNet", None, "unknown open_clip model"),
])
def test_what_would_download_fails_fast_with_a_clear_message(name, weights, message):
    with pytest.raises(BackboneError, match=message):
        Backbone(name, weights)


def test_preprocess_checks_frame_size(tiny):
    frames = torch.randint(0, 255, (2, tiny.image_size, tiny.image_size, 3), dtype=torch.uint8)
    x = tiny.preprocess(frames)
    assert x.shape == (2, 3, tiny.image_size, tiny.image_size) and x.dtype == torch.float32
    with pytest.raises(ValueError, match="expects"):
        tiny.preprocess(torch.zeros(2, 10, 10, 3, dtype=torch.uint8))


def test_the_embeddings_can_be_tapped_as_layer_minus_one(tiny):
    images = torch.randn(2, 3, tiny.image_size, tiny.image_size)
    with torch.no_grad():
        out = tiny.video_tokens(images, tiny.taps([-1, 0]))["block"]
        embeds = tiny.clip.visual._embeds(images)
    torch.testing.assert_close(out[:, 0], embeds)
    with pytest.raises(ValueError, match="only the 'block' point"):
        Taps((-1, 0), ("block", "attn"))


def test_tokens_are_the_same_in_train_and_eval_mode(tiny):
    """A frozen backbone's tokens do not depend on the module's mode: nn.MultiheadAttention's
    eval-mode fast path gave other last bits, and the suite caches features with the model in
    train mode while datasets.prepare and the Predictor encode in eval mode."""
    images = torch.randn(5, 3, tiny.image_size, tiny.image_size, generator=torch.Generator().manual_seed(3))
    ids = trim_text_ids(tiny.tokenize(["a small red circle moving left", "a square"]))
    outputs = []
    for train in (True, False):
        tiny.train(train)
        with torch.no_grad():
            outputs.append((tiny.video_tokens(images, tiny.taps(4))["block"], tiny.text_tokens(ids, tiny.taps(4))[0]["block"]))
    tiny.train(True)
    (video_a, text_a), (video_b, text_b) = outputs
    assert torch.equal(video_a, video_b) and torch.equal(text_a, text_b)
    assert torch.backends.mha.get_fastpath_enabled()          # PyTorch's switch is left as it was
