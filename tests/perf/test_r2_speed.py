"""Speed of the R² model from cached features at the paper's shapes (pytest-benchmark).

    pytest -m perf tests/perf --benchmark-enable

Shapes: 75 clips × 4 layers × 50 tokens × 768 (ViT-B/32 video), 20 query tokens × 4 × 512,
full loss, backward and AdamW; fp32 on the CPU threads torch is given (2 on the reference
machine). Reference implementation on a 2-core CPU: 5.2 s per training step at batch 8,
38 s at batch 32, 200 ms per video at inference; ours must be ≥ 20 % faster, which the
assertions below check against the benchmark's own median.
"""
import pytest
import torch

from r2bench.methods.head import GroundingHead, HeadConfig, decode, head_losses

pytestmark = pytest.mark.perf
REFERENCE_SECONDS = {"train_b8": 5.2, "train_b32": 38.0, "infer_per_video": 0.200}
REQUIRED_SPEEDUP = 0.8  # at least 20 % faster than the reference


def paper_batch(b: int, t: int = 75):
    g = torch.Generator().manual_seed(0)
    video = torch.randn(b, t, 4, 50, 768, generator=g)
    text = torch.randn(b, 4, 20, 512, generator=g)
    saliency = torch.zeros(b, t)
    saliency[:, 20:40] = 2.0
    return dict(video=video, video_mask=torch.ones(b, t, dtype=torch.bool), text=text,
                text_mask=torch.ones(b, 20, dtype=torch.bool), saliency=saliency,
                windows=[torch.tensor([[40.0, 80.0]])] * b, fps=torch.full((b,), 0.5),
                duration=torch.full((b,), 150.0))


@pytest.fixture(scope="module")
def head():
    torch.manual_seed(0)
    return GroundingHead(768, 512, HeadConfig())


def train_step(head, optimizer, batch):
    out = head(batch["video"], batch["video_mask"], batch["text"], batch["text_mask"])
    loss = head_losses(out, batch["windows"], batch["fps"], batch["saliency"], head.cfg)["total"]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


@pytest.mark.parametrize("batch_size, reference", [(8, "train_b8"), (32, "train_b32")])
def test_training_step_speed(benchmark, head, batch_size, reference):
    head.train()
    batch = paper_batch(batch_size)
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-4, weight_decay=1e-4)
    rounds = 3 if batch_size == 8 else 2
    benchmark.pedantic(train_step, args=(head, optimizer, batch), rounds=rounds, warmup_rounds=1)
    if benchmark.stats:  # absent with --benchmark-disable
        median = benchmark.stats.stats.median
        benchmark.extra_info.update(reference_s=REFERENCE_SECONDS[reference], threads=torch.get_num_threads())
        assert median <= REQUIRED_SPEEDUP * REFERENCE_SECONDS[reference]


def test_inference_speed_per_video(benchmark, head):
    head.eval()
    batch = paper_batch(8)

    @torch.no_grad()
    def infer():
        out = head(batch["video"], batch["video_mask"], batch["text"], batch["text_mask"])
        return decode(out, batch["fps"], batch["duration"], head.cfg)

    benchmark.pedantic(infer, rounds=3, warmup_rounds=1)
    if benchmark.stats:
        per_video = benchmark.stats.stats.median / 8
        benchmark.extra_info.update(per_video_s=per_video, reference_s=REFERENCE_SECONDS["infer_per_video"])
        assert per_video <= REQUIRED_SPEEDUP * REFERENCE_SECONDS["infer_per_video"]
