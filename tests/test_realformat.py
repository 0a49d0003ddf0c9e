"""The real-format fixture builders (tests/realformat.py) make what they say: OpenAI-format
archives that OpenAI's loaders and the project's Backbone read, H.264 videos of the right length
and rate with visible events, real QVHighlights lines pointing at them."""
import json
import time
import warnings

import numpy as np
import open_clip
import pytest
import torch

from r2bench.datasets.registry import get_dataset
from r2bench.datasets.video import read_frames, video_duration
from r2bench.methods.backbone import Backbone, BackboneError
from r2bench.methods.checkpoints import OPENAI_ATTRIBUTES, inspect_checkpoint
from tests.realformat import (QVHIGHLIGHTS_VAL, h264_videos, openai_clip, openai_torchscript_archive,
                              qvhighlights_lines, write_qvhighlights)


@pytest.fixture(scope="module")
def tiny_archive(tmp_path_factory):
    return openai_torchscript_archive(tmp_path_factory.mktemp("release") / "tiny.pt", "R2Bench-Tiny-quickgelu", seed=0)


def test_the_archive_is_openais_release_format(tiny_archive):
    """A TorchScript archive whose state dict has OpenAI's names, the three attributes and the
    release's mixed precision; open_clip's OpenAI loader builds a CLIP from it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)      # torch.jit's deprecation notice
        state = torch.jit.load(str(tiny_archive), map_location="cpu").state_dict()
    assert {"visual.conv1.weight", "visual.transformer.resblocks.5.attn.in_proj_weight", "token_embedding.weight",
            "transformer.resblocks.0.mlp.c_fc.weight", "ln_final.weight", "text_projection", "logit_scale",
            *OPENAI_ATTRIBUTES} <= set(state)
    assert [int(state[k]) for k in OPENAI_ATTRIBUTES] == [64, 32, 49408]
    assert state["visual.conv1.weight"].dtype == state["transformer.resblocks.0.attn.in_proj_weight"].dtype == torch.float16
    assert state["ln_final.weight"].dtype == state["token_embedding.weight"].dtype == torch.float32
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model = open_clip.load_openai_model(str(tiny_archive), device="cpu")
    theirs = model.state_dict()
    for name, value in state.items():
        if name not in OPENAI_ATTRIBUTES:
            assert torch.equal(theirs[name].float(), value.float()), name
    assert isinstance(model.visual.transformer.resblocks[0].mlp.gelu, open_clip.transformer.QuickGELU)


def test_the_backbone_loads_the_tiny_archive_with_quickgelu_and_refuses_gelu(tiny_archive):
    backbone = Backbone("R2Bench-Tiny-quickgelu", tiny_archive)
    expected = openai_clip("R2Bench-Tiny-quickgelu", seed=0).state_dict()
    for name, value in backbone.clip.state_dict().items():
        assert torch.equal(value, expected[name].float()), name
    assert isinstance(backbone.video_blocks[0].mlp.gelu, open_clip.transformer.QuickGELU)
    with pytest.raises(BackboneError, match=r"needs QuickGELU \(a TorchScript archive.*'R2Bench-Tiny-quickgelu'"):
        Backbone("R2Bench-Tiny", tiny_archive)


def test_archives_are_deterministic_per_seed():
    a, b, c = (openai_clip("R2Bench-Tiny-quickgelu", seed=s).state_dict() for s in (0, 0, 1))
    assert all(torch.equal(a[k], b[k]) for k in a) and not torch.equal(a["visual.proj"], c["visual.proj"])


@pytest.mark.slow
def test_a_real_size_openai_archive_is_checked_in_milliseconds_and_loads(tmp_path):
    """ViT-B/32 at the release's size (~350 MB): written, checked without loading, loaded."""
    start = time.perf_counter()
    path = openai_torchscript_archive(tmp_path / "ViT-B-32.pt")
    written = time.perf_counter() - start
    assert 300e6 < path.stat().st_size < 400e6, path.stat().st_size
    start = time.perf_counter()
    info = inspect_checkpoint(path)
    checked = time.perf_counter() - start
    assert (info.vision_width, info.vision_layers, info.patch_size, info.quick_gelu) == (768, 12, 32, True)
    assert checked < 1.0, checked
    with pytest.raises(BackboneError, match="pass the backbone config 'ViT-B-32-quickgelu'"):
        Backbone("ViT-B-32", path)
    assert Backbone("ViT-B-32-quickgelu", path).depth == 12
    print(f"ViT-B-32 archive: written in {written:.1f} s, checked in {checked * 1000:.0f} ms")


def test_h264_videos_have_their_duration_rate_and_visible_events(tmp_path):
    import decord
    start = time.perf_counter()
    paths = h264_videos(tmp_path, [12, 7.5], fps=30, size=(96, 64), seed=0)
    assert time.perf_counter() - start < 10
    for path, seconds in zip(paths, (12, 7.5)):
        reader = decord.VideoReader(str(path))
        assert len(reader) == round(seconds * 30) and reader.get_avg_fps() == pytest.approx(30)
        assert reader[0].shape == (64, 96, 3)
        assert video_duration(path) == pytest.approx(seconds)
    frames = read_frames(paths[0], 2, 64).astype(np.int16)          # 24 frames
    assert len(frames) == 24
    change = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))
    assert (change > 5).sum() >= 2                                    # events come and go
    again = h264_videos(tmp_path / "again", [12], fps=30, size=(96, 64), seed=0)[0]
    assert np.array_equal(read_frames(again, 2, 64), read_frames(paths[0], 2, 64))   # deterministic


def test_qvhighlights_lines_point_at_videos_of_their_duration(tmp_path):
    written = write_qvhighlights(tmp_path, n=2, size=(64, 48))
    real = [json.loads(s) for s in QVHIGHLIGHTS_VAL.read_text().splitlines()][:2]
    assert written["lines"] == real == qvhighlights_lines(2)
    data = get_dataset("qvhighlights").bind(written["annotations"], written["videos"])
    samples = data.samples("val")
    assert [s.qid for s in samples] == [line["qid"] for line in real]
    for s in samples:
        assert video_duration(data.video_path(s.vid)) == pytest.approx(s.duration)
