"""datasets.video: frame selection, resize/crop, duration and errors naming the file."""
import numpy as np
import pytest

from r2bench.core.errors import InputError
from r2bench.datasets.video import read_frames, video_duration


@pytest.fixture(scope="module")
def counter_video(tmp_path_factory):
    """3 s at 4 fps, 96x64 (W x H): frame k is uniformly grey at level 20*k, with a red left
    third and a blue right third so the centre crop is visible."""
    import imageio_ffmpeg

    path = tmp_path_factory.mktemp("video") / "counter.mp4"
    writer = imageio_ffmpeg.write_frames(str(path), (96, 64), fps=4, codec="libx264", pix_fmt_in="rgb24",
                                         pix_fmt_out="yuv420p", quality=None, ffmpeg_log_level="error",
                                         output_params=["-crf", "0"])
    writer.send(None)
    for k in range(12):
        frame = np.full((64, 96, 3), 20 * k, np.uint8)
        frame[:, :32] = (200, 30, 30)
        frame[:, 64:] = (30, 30, 200)
        writer.send(frame)
    writer.close()
    return path


def test_one_frame_at_the_centre_of_each_clip(counter_video):
    frames = read_frames(counter_video, fps=1, size=32)
    assert frames.shape == (3, 32, 32, 3) and frames.dtype == np.uint8
    # clip i is [i, i+1) s; its centre i+0.5 s is frame 4*i+2 at 4 fps
    levels = frames[:, 12:20, 12:20].reshape(3, -1).mean(1)
    np.testing.assert_allclose(levels, [40, 120, 200], atol=3)


def test_resize_shorter_side_then_centre_crop(counter_video):
    frames = read_frames(counter_video, fps=4, size=32).astype(int)
    assert frames.shape == (12, 32, 32, 3)
    # 96x64 -> 48x32, crop x in [8, 40): the red third ends at x=16, the blue starts at 32
    assert (frames[:, :, :6, 0] > 150).all() and (frames[:, :, :6, 2] < 80).all()
    assert (frames[:, :, -6:, 2] > 150).all() and (frames[:, :, -6:, 0] < 80).all()


def test_duration_and_at_least_one_frame(counter_video):
    assert video_duration(counter_video) == pytest.approx(3.0)
    assert read_frames(counter_video, fps=0.2, size=16).shape == (1, 16, 16, 3)
    assert read_frames(counter_video, fps=2, size=64).shape == (6, 64, 64, 3)


def test_missing_file_names_file_and_field(tmp_path):
    path = tmp_path / "nope.mp4"
    with pytest.raises(InputError) as e:
        read_frames(path, 1, 32)
    assert str(path) in str(e.value) and "field 'video'" in str(e.value) and "not found" in str(e.value)
    with pytest.raises(InputError):
        video_duration(path)


@pytest.mark.parametrize("content", [b"this is not a video" * 10, "truncated"])
def test_corrupt_file_names_file_and_field(tmp_path, counter_video, content):
    path = tmp_path / "bad.mp4"
    path.write_bytes(counter_video.read_bytes()[:300] if content == "truncated" else content)
    with pytest.raises(InputError) as e:
        read_frames(path, 1, 32)
    assert e.value.path == str(path) and e.value.field == "video"
