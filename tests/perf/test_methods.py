"""Training-step and inference speed of every Table 9 method, with peak memory (pytest-benchmark).

    pytest -m perf tests/perf/test_methods.py --benchmark-enable --benchmark-autosave
    pytest -m perf tests/perf/test_methods.py --benchmark-enable --benchmark-compare   # against the last save

One group per device and shape, one benchmark per method: the step is ``bench.train.train_step``
(the step the suite trains with) from frames, CLIP ViT-B/32 (random weights) included, FP16
autocast on CUDA. On CUDA the shape is the paper's (32 videos × 75 frames, 224²) and the peak
memory in ``extra_info`` is measured (``torch.cuda.max_memory_allocated``); on a CPU a
paper-scale step takes minutes, so the shape is 2 videos × 8 frames, and ``extra_info`` holds
the fake-tensor estimate of that step's peak and of the paper-scale step's (``bench.run``).
"""
from functools import partial

import pytest
import torch

from r2bench.bench.measure import count_params, cuda_peak_memory, estimate_peak_memory
from r2bench.bench.run import PAPER_BACKBONE, paper_memory
from r2bench.bench.suites import get_suite
from r2bench.bench.train import TrainConfig, make_step_state, train_step
from r2bench.methods.backbone import Backbone
from r2bench.methods.registry import build_model, get_method, registered

pytestmark = pytest.mark.perf
METHODS = [s.method for s in get_suite("table9").runs if s.method in registered()]   # the Table 9 rows
CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if CUDA else "cpu")
BATCH, FRAMES = (32, 75) if CUDA else (2, 8)


def make_batch(b: int, t: int, device: torch.device) -> dict:
    ids = torch.zeros(b, 20, dtype=torch.long, device=device)
    ids[:, 0], ids[:, 1:19], ids[:, 19] = 49406, 320, 49407
    saliency = torch.zeros(b, t, device=device)
    saliency[:, 2:5] = 2.0
    return dict(frames=torch.randn(b, t, 3, 224, 224, device=device),
                video_mask=torch.ones(b, t, dtype=torch.bool, device=device), text_ids=ids,
                windows=[torch.tensor([[4.0, 10.0]], device=device)] * b, saliency=saliency,
                fps=torch.full((b,), 0.5, device=device), duration=torch.full((b,), 2.0 * t, device=device),
                qid=list(range(b)), vid=[f"v{i}" for i in range(b)], query=["a query"] * b)


def setup(name: str, device: torch.device, b: int = BATCH, t: int = FRAMES):
    torch.manual_seed(0)
    model = build_model(name, Backbone(PAPER_BACKBONE, device=device)).to(device).train()
    autocast = partial(torch.autocast, device.type, dtype=torch.float16) if device.type == "cuda" else None
    state = make_step_state(model, TrainConfig(batch_size=b), device, autocast=autocast)
    return model, make_batch(b, t, device), state


@pytest.mark.parametrize("name", METHODS)
def test_training_step(benchmark, name):
    benchmark.group = f"train_step {DEVICE.type} {BATCH}x{FRAMES}"
    model, batch, state = setup(name, DEVICE)
    if CUDA:
        peak, source = cuda_peak_memory(lambda: train_step(model, batch, state)), "cuda"
    else:
        peak, source = estimate_peak_memory(lambda: train_step(*setup(name, DEVICE))), "estimate"
    benchmark.pedantic(train_step, args=(model, batch, state), rounds=3, warmup_rounds=1)
    paper_gib, paper_source = paper_memory(name, {}, DEVICE)
    benchmark.extra_info.update(method=name, category=get_method(name).category, params=count_params(model),
                                videos=BATCH, frames=FRAMES, peak_memory_gib=round(peak / 2**30, 3),
                                peak_memory_source=source, paper_scale_memory_gib=round(paper_gib, 3),
                                paper_scale_memory_source=paper_source, threads=torch.get_num_threads())
    if benchmark.stats:
        benchmark.extra_info["videos_per_s"] = round(BATCH / benchmark.stats.stats.median, 3)


@pytest.mark.parametrize("name", METHODS)
def test_inference(benchmark, name):
    benchmark.group = f"inference {DEVICE.type} {BATCH}x{FRAMES}"
    model, batch, _ = setup(name, DEVICE)
    model.eval()

    @torch.no_grad()
    def infer():
        with (torch.autocast("cuda", dtype=torch.float16) if CUDA else torch.autocast("cpu", enabled=False)):
            return model.predict(model(batch), batch)

    benchmark.pedantic(infer, rounds=3, warmup_rounds=1)
    benchmark.extra_info.update(method=name, videos=BATCH, frames=FRAMES)
    if benchmark.stats:
        benchmark.extra_info["videos_per_s"] = round(BATCH / benchmark.stats.stats.median, 3)
