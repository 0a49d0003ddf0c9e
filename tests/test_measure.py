"""bench.measure: parameter counts, the fake-tensor memory estimator, CUDA peak, throughput."""
from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from r2bench.bench.measure import (
    count_params,
    cuda_peak_memory,
    estimate_peak_memory,
    paper_millions,
    params_in_paper_unit,
    throughput,
)

F32 = 4


def test_count_params_frozen_and_shared():
    emb = nn.Embedding(100, 16)
    head = nn.Linear(16, 100, bias=False)
    head.weight = emb.weight  # tied: counted once
    frozen = nn.Linear(16, 16)
    frozen.requires_grad_(False)
    model = nn.ModuleDict({"emb": emb, "head": head, "frozen": frozen, "proj": nn.Linear(16, 4)})
    assert count_params(model) == 100 * 16 + 16 * 4 + 4
    assert count_params(frozen) == 0


def test_paper_unit():
    assert params_in_paper_unit(2**20) == 1.0
    assert paper_millions(3 * 2**19) == 1.5


def mlp_step(batch, d=256, h=1024, foreach=False):
    """Two AdamW steps (steady state) of Linear(d,h) → ReLU → Linear(h,d), no biases."""

    def step():
        model = nn.Sequential(nn.Linear(d, h, bias=False), nn.ReLU(), nn.Linear(h, d, bias=False))
        opt = torch.optim.AdamW(model.parameters(), foreach=foreach)
        x = torch.randn(batch, d)
        for _ in range(2):
            model(x).square().mean().backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

    return step


def backbone_step(batch, frozen=False, autocast=False, depth=8, d=512):
    """One AdamW step of a head on a deep MLP backbone, trained or frozen (no grad)."""

    def step():
        backbone = nn.Sequential(*[m for _ in range(depth) for m in (nn.Linear(d, d), nn.GELU())])
        backbone.requires_grad_(not frozen)
        head = nn.Linear(d, 1)
        params = [p for m in (backbone, head) for p in m.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params)
        x = torch.randn(batch, d)
        with torch.autocast("cpu", dtype=torch.float16, enabled=autocast):
            with torch.set_grad_enabled(not frozen):
                features = backbone(x)
            loss = head(features).float().square().mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def test_matches_analytic_expectation():
    """Exact accounting of the MLP step (tolerance 1 %: scalars such as loss and step counters).

    P = 2dh weights, x = B·d input, r = B·h ReLU output (saved for backward).
    Activation-bound (large B), peak in the 2nd backward at threshold_backward:
      params P + AdamW states 2P + grad of the 2nd layer P/2 + saved x, r + grad_r + grad_pre (2Bh).
    Parameter-bound (small B), peak in optimizer.step() of the 2nd layer:
      params P + grads P + states 2P + x + AdamW's sqrt and div temporaries of this parameter (P/2 each)
      + the previous parameter's denominator still referenced by the loop (P/2).
    """
    d, h = 256, 1024
    P = 2 * d * h
    B = 4096
    expected = F32 * (P + 2 * P + P // 2 + B * d + B * h + 2 * B * h)
    assert estimate_peak_memory(mlp_step(B, d, h), round_to=1) == pytest.approx(expected, rel=0.01)
    B = 16
    expected = F32 * (P + P + 2 * P + B * d + 3 * (P // 2))
    assert estimate_peak_memory(mlp_step(B, d, h), round_to=1) == pytest.approx(expected, rel=0.01)


def test_foreach_optimizer_has_one_parameter_sized_temporary():
    d, h = 256, 1024
    P = 2 * d * h
    est = estimate_peak_memory(mlp_step(16, d, h, foreach=True), round_to=1)
    assert est == pytest.approx(F32 * (4 * P + 16 * d + P), rel=0.01)


def test_frozen_backbone_is_much_smaller():
    trainable = estimate_peak_memory(backbone_step(2048))
    frozen = estimate_peak_memory(backbone_step(2048, frozen=True))
    assert frozen < 0.3 * trainable


def test_monotone_in_batch():
    peaks = [estimate_peak_memory(backbone_step(b)) for b in (64, 128, 256, 512, 1024)]
    assert all(a < b for a, b in zip(peaks, peaks[1:])), peaks


def test_autocast_fp16_halves_activation_memory():
    fp32 = estimate_peak_memory(backbone_step(4096))
    fp16 = estimate_peak_memory(backbone_step(4096, autocast=True))
    frozen16 = estimate_peak_memory(backbone_step(4096, autocast=True, frozen=True))
    assert 0.4 * fp32 < fp16 < 0.8 * fp32
    assert frozen16 < fp16


def test_views_share_storage_and_nothing_is_allocated():
    def step():
        x = torch.empty(2**34)  # 64 GiB, fake
        views = [x[::2], x.view(2**17, 2**17), x[10:], x.view(-1, 2).t()]
        assert len(views) == 4

    assert estimate_peak_memory(step, round_to=1) == 2**36


def test_module_to_and_allowance_and_device_filter():
    def step():
        model = nn.Linear(1024, 1024).to(torch.float16)  # swap_tensors path for fake params
        assert model.weight.dtype == torch.float16

    base = estimate_peak_memory(step, round_to=1)
    # the fp32 originals are still referenced while the fp16 copies are made: (4 + 2) bytes each
    assert base == (4 + 2) * (1024 * 1024 + 1024)
    assert base < estimate_peak_memory(step, round_to=1, overhead_bytes=10) == base + 10
    assert estimate_peak_memory(step, device_type="cuda") == 0


def test_rounding_to_allocator_blocks():
    def step():
        tensors = [torch.empty(3) for _ in range(10)]
        assert len(tensors) == 10

    assert estimate_peak_memory(step, round_to=1) == 10 * 12
    assert estimate_peak_memory(step) == 10 * 512


def test_throughput_counts_calls_and_rate():
    calls = []

    def fn():
        calls.append(1)
        time.sleep(0.02)

    rate = throughput(fn, n_items=10, warmup=2, repeats=3)
    assert len(calls) == 5
    assert 100 < rate < 600


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only error")
def test_cuda_peak_memory_needs_cuda():
    with pytest.raises(RuntimeError, match="CUDA"):
        cuda_peak_memory(lambda: None)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_estimate_matches_cuda_peak():
    def step():
        with torch.device("cuda"):
            model = nn.Sequential(nn.Linear(512, 2048), nn.GELU(), nn.Linear(2048, 512))
            opt = torch.optim.AdamW(model.parameters())
            x = torch.randn(16384, 512)
        for _ in range(2):
            with torch.autocast("cuda", dtype=torch.float16):
                loss = model(x).float().square().mean()
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

    est = estimate_peak_memory(step, device_type="cuda")
    step()  # leaves the persistent cuBLAS workspaces allocated, outside the measurement
    real = cuda_peak_memory(step)
    assert est == pytest.approx(real, rel=0.1)


def test_the_memory_estimate_of_a_run_is_computed_once_per_configuration(tmp_path, monkeypatch):
    from r2bench.bench import run as bench_run
    monkeypatch.setenv("R2BENCH_CACHE", str(tmp_path))
    calls = []
    monkeypatch.setattr(bench_run, "estimate_only", lambda m, o: calls.append((m, o)) or (1.5 + len(calls), "estimate"))
    assert bench_run.cached_estimate("lora", {"rank": 4}) == (2.5, "estimate")
    assert bench_run.cached_estimate("lora", {"rank": 4}) == (2.5, "estimate")      # from disk
    assert bench_run.cached_estimate("lora", {"rank": 8}) == (3.5, "estimate")      # another configuration
    assert calls == [("lora", {"rank": 4}), ("lora", {"rank": 8})]
    assert len(list((tmp_path / "memory" / "estimate").glob("lora-*.json"))) == 2
