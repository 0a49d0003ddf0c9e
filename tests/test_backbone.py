"""The backbone wrapper: taps equal open_clip's own intermediates; weights only from local files."""
import pytest
import torch
from safetensors.torch import save_file

from methods.backbone import RANDOM_INIT, Backbone, BackboneError, BlockHooks, trim_text_ids


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return Backbone("R2Bench-Tiny")


def test_video_and_text_taps_equal_open_clips_intermediates(tiny):
    images = torch.randn(3, 3, tiny.image_size, tiny.image_size)
    ids = tiny.tokenize(["a small red circle moving left", "a square"])
    with torch.no_grad():
        video = tiny.encode_video(images, 4)
        text, mask = tiny.encode_text(trim_text_ids(ids), 4)
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


def test_hooks_see_every_block_and_can_change_the_taps(tiny):
    seen = []

    class Recorder(BlockHooks):
        def run_block(self, index, block, x, ctx):
            seen.append((ctx.tower, index, ctx.frames_per_video))
            return super().run_block(index, block, x, ctx)

        def tap(self, index, x, ctx):
            return x[:, :1]  # e.g. strip inserted tokens

    images = torch.randn(4, 3, tiny.image_size, tiny.image_size)
    with torch.no_grad():
        out = tiny.encode_video(images, 2, hooks=Recorder(), frames_per_video=2)
    assert out.shape == (4, 2, 1, tiny.video_width)
    assert seen == [("video", i, 2) for i in range(tiny.depth)]


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
