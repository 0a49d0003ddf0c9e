"""The method contract: what every method must satisfy to take part in the benchmark, as checks
you can run on your own method before it enters a suite.

    r2bench check-method my_method.py NAME      # = python -m r2bench.methods.contract my_method.py NAME
    r2bench check-method NAME                   # a method already registered (built-in or installed)

Each check is one function ``check_…(name, backbone_state=None)`` that returns nothing when the
method ``name`` satisfies it and raises :class:`ContractError` (naming the check and what is
wrong) when it does not; :data:`CHECKS` lists them in order and :func:`check_method` runs them
all. tests/test_method_contract.py runs these same functions over everything registered, so a
method file is covered without editing the test, and a plugin is held to exactly what the
built-in methods are held to:

1. ``registration``: a known category, a label, a config dataclass deriving from ``HeadConfig``
   whose defaults construct;
2. ``meta_build``: it builds on the meta device with the paper's ViT-B/32, has learnable
   parameters, and runs the backbone with autograd exactly when its category says;
3. ``fake_tensor_step``: a training step runs under fake tensors (the memory estimate);
4. ``learnable_parameters``: what it adds is counted, optimised, saved and reached by the loss;
5. ``train_eval``: ``train()``/``eval()`` reach every module;
6. ``padding``: padded frames never change real frames;
7. ``backbone_gradient``: gradients flow through the backbone exactly when the category says;
8. ``checkpoint``: a checkpoint reloads to identical outputs;
9. ``cached_features``: cached features give what frames give (cacheable methods only).

Checks 3–9 run on the project's tiny CLIP (R2Bench-Tiny, a random backbone state drawn with
seed 0) and a small head, on the CPU, in seconds.

Layering: ``methods`` imports nothing from ``bench`` or ``datasets`` at import time. The
contract is where a method meets the harness, so the checks run the harness's own pieces —
``bench.train.train_step`` (the one training step), its optimizer and checkpoint functions,
``bench.measure``'s counter and fake-tensor estimate, ``datasets.vtg.collate`` — imported when a
check runs (:func:`_harness`), never when this module is imported. A contract with a training
step of its own would check a step the suites never run.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import torch

from r2bench.methods.backbone import Backbone
from r2bench.methods.head import HeadConfig
from r2bench.methods.registry import (CATEGORIES, GRADIENT_CATEGORIES, PluginError, build_model, get_method,
                                      load_plugin, registered)

PAPER_BACKBONE = "ViT-B-32"
TINY_BACKBONE = "R2Bench-Tiny"
SMALL_HEAD = dict(hidden=32, heads=4, ffn=64, dropout=0.1)   # every method config derives from HeadConfig


class ContractError(AssertionError):
    """A method breaks the contract: ``check`` names the check, ``message`` what is wrong."""

    def __init__(self, check: str, message: str):
        self.check, self.message = check, message
        super().__init__(f"[{check}] {message}")


class ContractSkip(Exception):
    """A check that does not apply to the method (e.g. the cache check on a non-cacheable one)."""


@dataclass(frozen=True)
class Check:
    name: str
    title: str
    run: Callable[..., None]


@dataclass(frozen=True)
class CheckResult:
    name: str
    title: str
    status: str              # pass | fail | skip
    message: str = ""
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status != "fail"


CHECKS: list[Check] = []


def _check(name: str, title: str):
    def wrap(fn):
        CHECKS.append(Check(name, title, fn))
        fn.check_name = name
        return fn
    return wrap


def _require(condition: bool, check: str, message: str) -> None:
    if not condition:
        raise ContractError(check, message)


def _close(check: str, what: str, actual, expected, **tolerances) -> None:
    """``torch.testing.assert_close`` whose failure is a ContractError naming ``what``."""
    try:
        torch.testing.assert_close(actual, expected, **tolerances)
    except AssertionError as e:
        raise ContractError(check, f"{what}: {e}") from None


# ---- the harness, reached at call time ------------------------------------------------------------
@lru_cache(maxsize=None)
def _harness() -> SimpleNamespace:
    """The harness pieces the checks run (see the module docstring: imported here, not above)."""
    from r2bench.bench import measure, train
    from r2bench.datasets import vtg
    return SimpleNamespace(collate=vtg.collate, TrainConfig=train.TrainConfig, build_optimizer=train.build_optimizer,
                           make_step_state=train.make_step_state, train_step=train.train_step,
                           save_checkpoint=train.save_checkpoint, load_checkpoint=train.load_checkpoint,
                           count_params=measure.count_params, estimate_peak_memory=measure.estimate_peak_memory)


# ---- tiny models and batches ----------------------------------------------------------------------
def random_backbone_state() -> dict:
    """The state of an R2Bench-Tiny backbone initialised with seed 0 (the RNG is left seeded)."""
    torch.manual_seed(0)
    return Backbone(TINY_BACKBONE).state_dict()


@lru_cache(maxsize=1)
def _default_backbone_state() -> dict:
    return random_backbone_state()


def tiny_model(name: str, backbone_state: dict | None, head: dict | None = None, seed: int = 0, **overrides):
    """Method ``name`` on a fresh tiny backbone (``backbone_state`` loaded unless None), head config
    ``head`` (default :data:`SMALL_HEAD`) updated by ``overrides``, its own parameters drawn with ``seed``."""
    backbone = Backbone(TINY_BACKBONE)
    if backbone_state is not None:
        backbone.load_state_dict(backbone_state)
    torch.manual_seed(seed)
    return build_model(name, backbone, {**(SMALL_HEAD if head is None else head), **overrides})


def make_items(model, lengths=(12, 9), queries=("a red circle moving left", "a square"), seed=0) -> list[dict]:
    """Two videos of different lengths (so the shorter one is padded in a batch), as frames."""
    g = torch.Generator().manual_seed(seed)
    size = model.backbone.image_size
    ids = model.backbone.tokenize(list(queries))
    items = []
    for i, (t, q) in enumerate(zip(lengths, queries)):
        saliency = torch.zeros(t)
        saliency[1:3] = torch.tensor([2.0, 3.0])
        items.append(dict(qid=i, vid=f"v{i}", query=q, duration=2.0 * t, source="frames",
                          video=torch.randn(t, 3, size, size, generator=g), text_ids=ids[i],
                          windows=torch.tensor([[2.0, 6.0]]), saliency=saliency))
    return items


def batch_of(items: list[dict]) -> dict:
    return _harness().collate(items, fps=0.5)


def clip_parameter_names(model) -> set[str]:
    """Names the backbone's own CLIP parameters have inside ``model`` (peft may insert
    ``base_layer`` into them)."""
    vanilla = {f"backbone.{n}" for n, _ in Backbone(TINY_BACKBONE, device="meta").named_parameters()}
    return {n for n, _ in model.named_parameters() if n.replace(".base_layer", "") in vanilla}


def _state(backbone_state: dict | None) -> dict:
    return _default_backbone_state() if backbone_state is None else backbone_state


# ---- the checks ---------------------------------------------------------------------------------------
@_check("registration", "registered with a known category, a label and a HeadConfig config whose defaults construct")
def check_registration(name: str, backbone_state: dict | None = None) -> None:
    check = "registration"
    entry = get_method(name)
    _require(entry.category in CATEGORIES, check, f"category {entry.category!r} is not one of {CATEGORIES}")
    _require(bool(entry.label and entry.label.strip()), check, "the label (the row name in tables) is empty")
    _require(dataclasses.is_dataclass(entry.config_cls) and isinstance(entry.config_cls, type)
             and issubclass(entry.config_cls, HeadConfig), check,
             f"config {entry.config_cls!r} must be a dataclass deriving from HeadConfig (so the shared "
             f"head's switches stay overridable by name)")
    try:
        entry.make_config({})
    except Exception as e:
        raise ContractError(check, f"the config's defaults do not construct: {type(e).__name__}: {e}") from e


@_check("meta_build", "builds on the meta device with the paper's ViT-B/32; backbone autograd as the category says")
def check_meta_build(name: str, backbone_state: dict | None = None) -> None:
    check = "meta_build"
    with torch.device("meta"):
        model = build_model(name, Backbone(PAPER_BACKBONE, device="meta"))
    _require(_harness().count_params(model) > 0, check, "the model has no learnable parameter")
    category = get_method(name).category
    _require(model.backbone_grad == (category in GRADIENT_CATEGORIES), check,
             f"registered as {category} but backbone_grad={model.backbone_grad}")


@_check("fake_tensor_step", "a training step runs under fake tensors (the peak-memory estimate)")
def check_fake_tensor_step(name: str, backbone_state: dict | None = None) -> None:
    h = _harness()

    def step():
        model = tiny_model(name, None).train()
        state = h.make_step_state(model, h.TrainConfig(), torch.device("cpu"),
                                  autocast=partial(torch.autocast, "cpu", dtype=torch.float16))
        ids = torch.zeros(2, 6, dtype=torch.long)   # fixed ids: trimming real ones reads their values
        ids[:, 0], ids[:, 1:5], ids[:, 5] = 49406, 320, 49407
        size = model.backbone.image_size
        batch = dict(frames=torch.randn(2, 12, 3, size, size), video_mask=torch.ones(2, 12, dtype=torch.bool),
                     text_ids=ids, windows=[torch.tensor([[2.0, 6.0]])] * 2, saliency=torch.ones(2, 12),
                     fps=torch.full((2,), 0.5), duration=torch.full((2,), 24.0))
        h.train_step(model, batch, state)
    _require(h.estimate_peak_memory(step) > 0, "fake_tensor_step", "the fake-tensor step allocated nothing")


@_check("learnable_parameters", "what it adds is counted, optimised, saved and reached by the loss")
def check_learnable_parameters(name: str, backbone_state: dict | None = None) -> None:
    check, h = "learnable_parameters", _harness()
    model = tiny_model(name, _state(backbone_state)).train()
    learnable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    counted = h.count_params(model)
    _require(counted == sum(p.numel() for p in learnable.values()), check,
             f"the parameter count ({counted}) differs from the sum over named learnable parameters "
             f"({sum(p.numel() for p in learnable.values())}): a parameter is shared or hidden")
    optimizer = h.build_optimizer(model, h.TrainConfig())
    optimised = {id(p) for g in optimizer.param_groups for p in g["params"]}
    missing = sorted(n for n, p in learnable.items() if id(p) not in optimised)
    _require(optimised == {id(p) for p in learnable.values()}, check,
             f"the optimizer's parameters are not the learnable ones (not optimised: {missing[:5]})")
    saved = model.learnable_state_dict()
    _require(set(learnable) <= set(saved), check,
             f"learnable parameters missing from the checkpoint: {sorted(set(learnable) - set(saved))[:5]}")
    state = h.make_step_state(model, h.TrainConfig(), torch.device("cpu"))
    h.train_step(model, batch_of(make_items(model)), state)
    added = set(learnable) - clip_parameter_names(model)
    unreached = sorted(n for n in added if learnable[n].grad is None and learnable[n].numel())
    _require(not unreached, check, f"parameters the loss never reaches (dead weights): {unreached[:5]}")


@_check("train_eval", "train()/eval() reach every module")
def check_train_eval(name: str, backbone_state: dict | None = None) -> None:
    check = "train_eval"
    model = tiny_model(name, _state(backbone_state))
    model.train()
    stuck = [n for n, m in model.named_modules() if not m.training]
    _require(not stuck, check, f"modules still in eval mode after train(): {stuck[:5]}")
    model.eval()
    stuck = [n for n, m in model.named_modules() if m.training]
    _require(not stuck, check, f"modules still in training mode after eval(): {stuck[:5]}")


@_check("padding", "padded frames never change real frames")
def check_padding(name: str, backbone_state: dict | None = None) -> None:
    check, h = "padding", _harness()
    model = tiny_model(name, _state(backbone_state)).train()
    long, short = make_items(model)
    # one step first: zero-initialised branches (adapters, side networks) are inert at init and
    # would pass whatever they do with padded frames
    h.train_step(model, batch_of([long, short]), h.make_step_state(model, h.TrainConfig(lr=1e-2), torch.device("cpu")))
    model.eval()
    batch = batch_of([long, short])
    extra = 3                               # the same batch with 3 more padded frames at the end
    padded = dict(batch, frames=torch.cat([batch["frames"], torch.randn(2, extra, *batch["frames"].shape[2:])], 1),
                  video_mask=torch.cat([batch["video_mask"], torch.zeros(2, extra, dtype=torch.bool)], 1),
                  saliency=torch.cat([batch["saliency"], torch.zeros(2, extra)], 1))
    with torch.no_grad():
        a, b = model(batch), model(padded)
    real = batch["video_mask"]
    _close(check, "the real frames' outputs change when padded frames are appended",
           b.h[:, : real.shape[1]][real], a.h[real], atol=1e-5, rtol=1e-4)
    _close(check, "the query's output changes when padded frames are appended", b.query, a.query,
           atol=1e-5, rtol=1e-4)


@_check("backbone_gradient", "gradients flow through the backbone exactly when the category says")
def check_backbone_gradient(name: str, backbone_state: dict | None = None) -> None:
    check = "backbone_gradient"
    model = tiny_model(name, _state(backbone_state)).train()
    seen = {}

    def record(module, inputs, output):     # returns None: the output stays what it was
        seen.setdefault("requires_grad", output.requires_grad)

    last = model.backbone.video_blocks[max(model.video_taps.layers)].mlp   # the backbone calls a block's parts
    handle = last.register_forward_hook(record)
    batch = batch_of(make_items(model))
    try:
        out = model(batch)
        model.loss(out, batch)["total"].backward()
    finally:
        handle.remove()
    clip = clip_parameter_names(model)
    _require("requires_grad" in seen, check, "the batch comes as frames, yet the backbone's last tapped block never ran")
    category = get_method(name).category
    if category in GRADIENT_CATEGORIES:
        _require(seen["requires_grad"], check, f"{category}: the backbone must run with autograd")
        trained = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is not None]
        _require(bool(trained), check, f"{category}: no trainable weight got a gradient")
    else:
        _require(not seen["requires_grad"], check, f"{category}: the backbone must run without autograd")
        leaked = [n for n, p in model.named_parameters() if n in clip and p.grad is not None]
        _require(not leaked, check, f"{category}: CLIP weights got gradients: {leaked[:5]}")


@_check("checkpoint", "a saved checkpoint reloads to identical outputs")
def check_checkpoint(name: str, backbone_state: dict | None = None) -> None:
    check, h = "checkpoint", _harness()
    state = _state(backbone_state)
    model = tiny_model(name, state).train()
    step_state = h.make_step_state(model, h.TrainConfig(lr=1e-2), torch.device("cpu"))
    batch = batch_of(make_items(model))
    h.train_step(model, batch, step_state)
    with tempfile.TemporaryDirectory(prefix="r2bench-contract-") as tmp:
        path = h.save_checkpoint(model, Path(tmp) / "ckpt.safetensors")
        fresh = tiny_model(name, state, seed=1)
        h.load_checkpoint(fresh, path)
    model.eval(), fresh.eval()
    with torch.no_grad():
        a, b = model(batch), fresh(batch)
    _close(check, "the reloaded model's frame outputs differ (something it learns is not saved)", a.h, b.h)
    _close(check, "the reloaded model's class scores differ", a.levels[0]["cls"], b.levels[0]["cls"])


@_check("cached_features", "cached features give what frames give (cacheable methods)")
def check_cached_features(name: str, backbone_state: dict | None = None) -> None:
    check = "cached_features"
    model = tiny_model(name, _state(backbone_state)).eval()
    if not model.cacheable:
        raise ContractSkip(f"{name} is not cacheable (backbone gradient or hooks)")
    items = make_items(model)
    with torch.no_grad():
        from_frames = model(batch_of(items))
        for it in items:   # what the feature cache stores: {point: (T, L, N, D)} per video
            it["video"] = {k: v[0] for k, v in model.video_layer_tokens(it["video"][None]).items()}
            it["source"] = "features"
        from_cache = model(batch_of(items))
    real = from_frames.video_mask
    _close(check, "outputs from cached features differ from outputs from frames",
           from_cache.h[real], from_frames.h[real], atol=1e-5, rtol=1e-4)


# ---- running them ---------------------------------------------------------------------------------
def run_check(check: Check, name: str, backbone_state: dict | None = None) -> CheckResult:
    """One check on method ``name``: its result, never an exception (a crash is a failure)."""
    start = time.perf_counter()
    try:
        check.run(name, backbone_state)
        status, message = "pass", ""
    except ContractSkip as e:
        status, message = "skip", str(e)
    except ContractError as e:
        status, message = "fail", e.message
    except Exception as e:   # the method crashed under this check
        status, message = "fail", f"raised {type(e).__name__}: {e}"
    return CheckResult(check.name, check.title, status, message, time.perf_counter() - start)


def check_method(name: str, backbone_state: dict | None = None) -> list[CheckResult]:
    """Every check of the contract on method ``name`` (which must be registered), in order."""
    get_method(name)   # an unknown name is a KeyError listing the known ones, not nine failures
    return [run_check(c, name, backbone_state) for c in CHECKS]


# ---- the command ------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="r2bench check-method",
        description="Run the method contract on a method: load FILE as a plugin (its methods register "
                    "themselves with r2bench.methods.register), check NAME, and report its learnable "
                    "parameters and peak training memory at the paper's setting. Without FILE, NAME is a "
                    "method already registered. Exit status: 0 the contract holds, 1 it is broken, "
                    "2 FILE cannot be loaded or does not register NAME.")
    p.add_argument("file", nargs="?", help="a Python file registering the method (a plugin)")
    p.add_argument("name", help="the method's registered name")
    p.add_argument("--no-memory", action="store_true",
                   help="skip the peak-memory estimate (a fake-tensor step at 32 × 75 frames, ~½ min on a CPU)")
    return p


def _measure(name: str, memory: bool, out) -> None:
    """Parameters at ViT-B/32 and peak memory at the paper's setting, as a suite row reports them
    (bench.run; imported here: a command may reach the harness)."""
    from r2bench.bench.measure import params_in_paper_unit
    from r2bench.bench.run import PAPER_BATCH, PAPER_FRAMES, paper_memory, paper_params
    params, _ = paper_params(name, {})
    head, _ = paper_params("frozen", {})
    print(f"learnable parameters at {PAPER_BACKBONE}: {params:,} = {params_in_paper_unit(params):.3f} M "
          f"(M = 2^20); the shared head alone (w/o Tuning): {head:,}, so the method adds {params - head:+,}",
          file=out)
    if not memory:
        return
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gib, source = paper_memory(name, {}, device)
    how = "measured on CUDA" if source == "cuda" else "estimate: fake tensors, CPU autocast"
    print(f"peak memory of one training step at the paper's setting (224², {PAPER_BATCH} videos × "
          f"{PAPER_FRAMES} frames, FP16, from frames): {gib:.2f} GiB ({how})", file=out)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    out, err = sys.stdout, sys.stderr
    if args.file is not None:
        try:
            names = load_plugin(args.file)
        except PluginError as e:
            print(f"check-method: cannot load {e}", file=err)
            return 2
        if args.name not in names:
            print(f"check-method: {args.file} does not register a method '{args.name}'; it registers: "
                  f"{', '.join(names) if names else 'nothing'}", file=err)
            return 2
    elif args.name not in registered():
        print(f"check-method: no registered method '{args.name}'; registered: {', '.join(registered())}", file=err)
        return 2
    entry = get_method(args.name)
    print(f"method '{entry.name}' ({entry.label}, {entry.category}) from {entry.source}", file=out)
    results = []
    for check in CHECKS:
        result = run_check(check, args.name)
        results.append(result)
        line = f"  {result.status.upper():4}  {result.name:<21} {result.title} ({result.seconds:.1f} s)"
        if result.message:   # indented under its check, one line per line of the message
            line += "".join(f"\n        {text}" for text in result.message.splitlines() if text.strip())
        print(line, file=out, flush=True)
    failed = [r.name for r in results if not r.passed]
    if "meta_build" not in failed:
        try:
            _measure(args.name, not args.no_memory, out)
        except Exception as e:
            print(f"could not measure the method at the paper's setting: {type(e).__name__}: {e}", file=out)
    if failed:
        print(f"check-method: '{args.name}' breaks the method contract: {', '.join(failed)}", file=err)
        return 1
    print(f"'{args.name}' satisfies the method contract ({len(results)} checks"
          f"{', ' + str(sum(r.status == 'skip' for r in results)) + ' skipped' if any(r.status == 'skip' for r in results) else ''})",
          file=out)
    return 0


if __name__ == "__main__":
    import sys as _sys

    from r2bench.core.errors import guarded
    _sys.exit(guarded(main))
