"""Pretrain the R2Bench-Tiny CLIP contrastively on synthetic image–caption pairs.

Image-level pretraining with coarse captions, as real CLIP's: a caption says which colours
and shapes a still scene holds and how many (``generator.scene_caption``), never their size,
position or motion. Nothing asks the last layer to keep that detail; what survives of it
lives in the intermediate layers (``python -m r2bench.datasets.synthetic.probe`` measures it).

``python -m r2bench.datasets.synthetic.tiny_clip [--steps N] [--seed S] [--out PATH]`` renders scenes from
``datasets.synthetic`` on the fly (seeded), trains with the CLIP loss (on the CPU unless
``--device cuda``), writes a safetensors state dict atomically and prints held-out retrieval
accuracy. The file loads with ``open_clip.create_model("R2Bench-Tiny", pretrained=PATH)`` (the
config is registered with open_clip by ``methods.backbone``, imported here). Same seed, machine and thread
count → the same checkpoint, bit for bit.
"""
from __future__ import annotations

import argparse
import json
import dataclasses
import functools
import importlib
import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from tqdm import tqdm

from r2bench.core.io import atomic_write, cache_dir
from r2bench.datasets.synthetic import generator as synthetic
from r2bench.methods.backbone import trim_text_ids  # importing methods.backbone registers R2Bench-Tiny
from r2bench.methods.checkpoints import CHECKSUM_KEY, safetensors_bytes, tensors_checksum, verify_safetensors

log = logging.getLogger(__name__)

# 1: captions named one object by all (or an unambiguous subset of) its static attributes.
# 2: image-level captions of coarse attributes only (colours, shapes, counts).
TINY_CLIP_VERSION = 3
MODEL_NAME = "R2Bench-Tiny"
IMAGE_SIZE = 64
DEFAULT_STEPS = 3000
BATCH_SIZE = 64
LR = 1e-3
N_HELDOUT = 512
WEIGHT_DECAY = 0.1
MAX_OBJECTS = 4
# which pairs of a batch count as positives: equal caption strings, or equal caption content
# (the same colours, shapes and counts, whatever the lead-in and the order of the parts)
POSITIVES = ("caption", "content")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Pretraining options besides seed and steps (the defaults are the shipped recipe).

    ``model``: an open_clip config name (``methods/model_configs``); ``patch_dropout``: FLIP's
    random patch dropout while pretraining only (open_clip's ``force_patch_dropout``; the saved
    model loads without it); ``max_objects``: scenes hold 1..max_objects objects;
    ``warmup``: fraction of the steps with linear warm-up (then cosine decay to 0);
    ``positives``: ``"caption"`` counts pairs with equal caption strings as positives,
    ``"content"`` pairs whose captions say the same (``scene_caption`` without lead-in, sorted):
    "we see a red circle" and "a red circle" are then not pushed apart."""

    model: str = MODEL_NAME
    batch_size: int = BATCH_SIZE
    lr: float = LR
    weight_decay: float = WEIGHT_DECAY
    warmup: float = 0.1
    patch_dropout: float = 0.0
    max_objects: int = MAX_OBJECTS
    positives: str = "caption"

    def __post_init__(self):
        if self.positives not in POSITIVES:
            raise ValueError(f"positives must be one of {POSITIVES}, got {self.positives!r}")

    def changed(self) -> dict[str, str]:
        """The fields that differ from the default recipe, as strings (checkpoint metadata)."""
        default = Recipe()
        return {f.name: str(getattr(self, f.name)) for f in dataclasses.fields(self)
                if getattr(self, f.name) != getattr(default, f.name)}


def checkpoint_path(seed: int = 0, steps: int = DEFAULT_STEPS) -> Path:
    """``cache_dir()/tiny_clip/R2Bench-Tiny-v<version>-s<seed>.safetensors`` (``-n<steps>`` if not default)."""
    suffix = "" if steps == DEFAULT_STEPS else f"-n{steps}"
    return cache_dir() / "tiny_clip" / f"{MODEL_NAME}-v{TINY_CLIP_VERSION}-s{seed}{suffix}.safetensors"


@functools.lru_cache(maxsize=None)
def _tokenizer():
    return open_clip.get_tokenizer(MODEL_NAME)   # every R2Bench config shares CLIP's tokenizer


@functools.lru_cache(maxsize=4096)
def _tokens(caption: str) -> torch.Tensor:
    return _tokenizer()([caption])[0]


def tokenize(captions: list[str]) -> torch.Tensor:
    """Token ids ``(B, 32)`` with open_clip's tokenizer for R2Bench-Tiny (memoised per caption)."""
    return torch.stack([_tokens(c) for c in captions])


def normalize(images: np.ndarray) -> torch.Tensor:
    """uint8 ``(B, H, W, 3)`` → float ``(B, 3, H, W)`` with CLIP mean/std."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_DATASET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def sample_pairs(rng: np.random.Generator, n: int, size: int = IMAGE_SIZE,
                 max_objects: int = MAX_OBJECTS, content: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """``n`` rendered still scenes of 1–``max_objects`` objects and their coarse image-level captions
    (``generator.scene_caption``, with a random lead-in such as "we see"). If ``content`` is a
    list, each scene's canonical caption (no lead-in, sorted) is appended to it (no RNG draw)."""
    images, captions = [], []
    for _ in range(n):
        scene = synthetic.random_scene(rng, max_objects)
        images.append(synthetic.render(scene, size, 0.0, rng))
        captions.append(synthetic.scene_caption(scene, rng))
        if content is not None:
            content.append(synthetic.scene_caption(scene))
    return np.stack(images), captions


def create_model(device: str | torch.device = "cpu", model: str = MODEL_NAME, patch_dropout: float = 0.0
                 ) -> torch.nn.Module:
    """A randomly initialised R2Bench-Tiny (or ``model``; seed the global torch RNG first)."""
    return open_clip.create_model(model, device=device, force_patch_dropout=patch_dropout or None)


def image_size(model: torch.nn.Module) -> int:
    size = model.visual.image_size
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def load_tiny_clip(path: str | os.PathLike, device: str | torch.device = "cpu", model: str = MODEL_NAME
                   ) -> torch.nn.Module:
    """R2Bench-Tiny (or ``model``) with weights from ``path`` through open_clip's own loader, in eval mode."""
    return open_clip.create_model(model, pretrained=str(path), device=device).eval()


@torch.no_grad()
def retrieval_accuracy(model: torch.nn.Module, seed: int = 0, n: int = N_HELDOUT) -> dict[str, float]:
    """Held-out top-1 retrieval among ``n`` fresh scenes and their coarse captions (no lead-in).
    A pick counts as right when its caption equals the true one (several scenes may share a
    caption). ``i2t``: image → best caption; ``t2i``: caption → best image; ``*_chance``: the
    same for a random pick."""
    rng = np.random.default_rng([seed, 1])
    scenes = [synthetic.random_scene(rng) for _ in range(n)]
    images = np.stack([synthetic.render(s, image_size(model), 0.0, rng) for s in scenes])
    captions = [synthetic.scene_caption(s) for s in scenes]
    same = torch.tensor([[a == b for b in captions] for a in captions])
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    img = model.encode_image(normalize(images).to(device), normalize=True)
    txt = model.encode_text(tokenize(captions).to(device), normalize=True)
    model.train(was_training)
    sim = (img @ txt.T).cpu()
    rows = torch.arange(n)
    chance = same.float().mean().item()
    return {"i2t": same[rows, sim.argmax(1)].float().mean().item(), "i2t_chance": chance,
            "t2i": same[sim.argmax(0), rows].float().mean().item(), "t2i_chance": chance}


def _encode_text_trimmed(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """``model.encode_text(tokens)`` computed on the shortest prefix holding every EOT token.

    Mathematically exact (equal up to float rounding): the text tower is causal and pools at
    the EOT (argmax) token, so the padding after it never influences the result; trimming
    just skips that work (≈2x faster text tower).
    """
    tokens = trim_text_ids(tokens)
    length = tokens.shape[1]
    x = model.token_embedding(tokens) + model.positional_embedding[:length]
    x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask[:length, :length]))
    return x[torch.arange(len(tokens), device=x.device), tokens.argmax(dim=1)] @ model.text_projection


def contrastive_loss(img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor, captions: list[str]) -> torch.Tensor:
    """CLIP's symmetric cross-entropy, with every pair whose captions are equal counted as a
    positive (targets spread evenly over them). Coarse captions repeat within a batch ("a red
    circle"); open_clip's ``ClipLoss`` would push such true matches apart. Written here
    because open_clip has no multi-positive variant."""
    ids = {c: i for i, c in enumerate(dict.fromkeys(captions))}
    key = torch.tensor([ids[c] for c in captions], device=img.device)
    same = (key[:, None] == key[None, :]).float()
    target = same / same.sum(1, keepdim=True)
    logits = scale * img @ txt.T
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def _lr(step: int, steps: int, lr: float = LR, warmup: float = 0.1) -> float:
    """Linear warm-up over the first ``warmup`` (10 %) of steps, then cosine decay to 0."""
    warmup = max(1, int(steps * warmup)) if warmup != 0.1 else max(1, steps // 10)
    if step < warmup:
        return lr * (step + 1) / warmup
    return lr * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def train(seed: int = 0, steps: int = DEFAULT_STEPS, batch_size: int | None = None, device: str | torch.device = "cpu",
          n_heldout: int = N_HELDOUT, progress: bool = True, recipe: Recipe | None = None
          ) -> tuple[torch.nn.Module, dict[str, float]]:
    """Train from scratch; returns the model (eval mode) and held-out retrieval accuracy.
    ``batch_size``, when given, overrides the recipe's."""
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"tiny CLIP pretraining needs at least 1 step, got {steps!r}")
    recipe = recipe or Recipe()
    if batch_size is not None:
        recipe = dataclasses.replace(recipe, batch_size=batch_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = create_model(device, recipe.model, recipe.patch_dropout).train()
    if model.text_pool_type != "argmax":
        raise RuntimeError("trimmed text encoding assumes EOT (argmax) pooling")
    decay = [p for p in model.parameters() if p.ndim >= 2]
    rest = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                             {"params": rest, "weight_decay": 0.0}],
                            lr=recipe.lr, betas=(0.9, 0.98), eps=1e-6, fused=True)
    rng = np.random.default_rng([seed, 0])
    size = image_size(model)
    bar = tqdm(range(steps), desc="tiny CLIP", unit="step", disable=not progress)
    for step in bar:
        content = [] if recipe.positives == "content" else None
        images, captions = sample_pairs(rng, recipe.batch_size, size, recipe.max_objects, content)
        for group in opt.param_groups:
            group["lr"] = _lr(step, steps, recipe.lr, recipe.warmup)
        img_f = F.normalize(model.encode_image(normalize(images).to(device)), dim=-1)
        txt_f = F.normalize(_encode_text_trimmed(model, tokenize(captions).to(device)), dim=-1)
        loss = contrastive_loss(img_f, txt_f, model.logit_scale.exp(), content if content is not None else captions)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return model, retrieval_accuracy(model, seed, n_heldout)


def save(model: torch.nn.Module, path: str | os.PathLike, metadata: dict[str, str]) -> Path:
    """Write the state dict as safetensors atomically (temp file + rename), with a checksum of
    its weights in the metadata (``methods.checkpoints.verify_safetensors`` checks it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return atomic_write(path, safetensors_bytes(state, {**metadata, CHECKSUM_KEY: tensors_checksum(state)}))


def _recipe(seed: int, steps: int, recipe: Recipe | None = None) -> dict[str, str]:
    recipe = recipe or Recipe()
    return {"model": recipe.model, "version": str(TINY_CLIP_VERSION), "seed": str(seed), "steps": str(steps),
            "batch_size": str(recipe.batch_size), "lr": str(recipe.lr),
            **{k: v for k, v in recipe.changed().items() if k not in ("model", "batch_size", "lr")}}


def pretrain(seed: int = 0, steps: int = DEFAULT_STEPS, out: str | os.PathLike | None = None,
             device: str = "cpu", progress: bool = True, recipe: Recipe | None = None) -> tuple[Path, dict[str, float]]:
    """Train and save; returns the checkpoint path and held-out accuracy."""
    model, acc = train(seed, steps, device=device, progress=progress, recipe=recipe)
    meta = {**_recipe(seed, steps, recipe), "device": str(device), "torch": torch.__version__,
            **{k: f"{v:.4f}" for k, v in acc.items()}}
    path = save(model, out if out is not None else checkpoint_path(seed, steps), meta)
    return path, acc


# --------------------------------------------------------------------------- the shipped weights
# The project pretrains the tiny CLIP once (``python -m r2bench.datasets.synthetic.tiny_clip --ship``)
# and ships it: every machine runs the same backbone, and the Quickstart never pretrains. The file
# holds the weights in fp16, and of the 49,408-row token embedding only the rows of the words the
# benchmark writes (``generator.vocabulary``) and of the tokens pretraining touched; the other rows
# are never looked up by any text of the benchmark and load as zeros. Expanded (fp32, full
# embedding) into the cache on first use, checked against the checksum the archive carries.
SHIPPED = (Path(importlib.import_module("r2bench.methods").__file__).parent / "weights"
           / f"{MODEL_NAME}-v{TINY_CLIP_VERSION}.safetensors.xz")      # package data: a checkout or the wheel
# its per-layer probes (python -m r2bench.datasets.synthetic.probe --n 3000 --json ...): the report
# shows them under every suite run on the built-in benchmark (docs/benchmark.md)
SHIPPED_PROBE = SHIPPED.with_name(f"{MODEL_NAME}-v{TINY_CLIP_VERSION}.probe.json")
EMBEDDING = "token_embedding.weight"


def vocabulary_token_ids() -> list[int]:
    """Token ids of every word the benchmark writes, with the start and end tokens and padding."""
    tok = _tokenizer()
    ids = {0}
    for word in synthetic.vocabulary():
        ids |= {int(i) for i in tok([word])[0].tolist()}
    return sorted(ids)


def ship(src: str | os.PathLike, dst: str | os.PathLike = SHIPPED) -> Path:
    """Write the shipped archive of the pretrained checkpoint ``src`` (see above)."""
    import lzma
    from safetensors.torch import load_file
    src = Path(src)
    meta = verify_safetensors(src)
    state = load_file(str(src))
    emb = state[EMBEDDING]
    with torch.random.fork_rng(devices=[]):           # the rows pretraining never touched are their init × c
        torch.manual_seed(int(meta.get("seed", 0)))
        init = create_model().token_embedding.weight.detach()
    c = float((emb / init).median())
    touched = ((emb - c * init).norm(dim=1) / (c * init).norm(dim=1).clamp_min(1e-12) > 1e-3).nonzero().flatten()
    rows = sorted(set(vocabulary_token_ids()) | {int(i) for i in touched})
    shipped = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items() if k != EMBEDDING}
    shipped["token_embedding.rows"] = torch.tensor(rows, dtype=torch.int64)
    shipped["token_embedding.values"] = emb[rows].half()
    expanded = expand(shipped, emb.shape)
    info = {k: v for k, v in meta.items() if k != CHECKSUM_KEY}
    info.update(version=str(TINY_CLIP_VERSION), shipped="fp16; token embedding: the benchmark's vocabulary and the tokens pretraining touched",
                embedding_rows=str(len(rows)), source_checksum=meta.get(CHECKSUM_KEY, ""),
                expanded_checksum=tensors_checksum(expanded), embedding_shape=json.dumps(list(emb.shape)))
    data = lzma.compress(safetensors_bytes(shipped, info), preset=9 | lzma.PRESET_EXTREME)
    return atomic_write(dst, data)


def expand(shipped: dict[str, torch.Tensor], embedding_shape) -> dict[str, torch.Tensor]:
    """The full fp32 state dict of a shipped archive's tensors (absent embedding rows: zeros)."""
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in shipped.items()
             if not k.startswith("token_embedding.")}
    emb = torch.zeros(*embedding_shape, dtype=torch.float32)
    emb[shipped["token_embedding.rows"]] = shipped["token_embedding.values"].float()
    state[EMBEDDING] = emb
    return state


def shipped_name(seed: int = 0) -> str:
    """The file name of the expanded shipped weights (what run records name them by)."""
    return f"{MODEL_NAME}-v{TINY_CLIP_VERSION}-s{seed}.safetensors"


def shipped_path(seed: int = 0) -> Path:
    """Where the expanded shipped weights live in the cache."""
    return cache_dir() / "tiny_clip" / shipped_name(seed)


def ensure_tiny_clip(seed: int = 0, progress: bool = True) -> Path:
    """The project's tiny CLIP: the shipped weights, expanded into the cache on first use (and
    again when the cached file is missing, damaged or from another version). Never pretrains:
    ``python -m r2bench.datasets.synthetic.tiny_clip`` does that, by hand."""
    import lzma
    from safetensors.torch import load as load_bytes
    if seed != 0:
        raise ValueError("the project ships the tiny CLIP of pretraining seed 0; pretrain others with "
                         f"python -m r2bench.datasets.synthetic.tiny_clip --seed {seed} --out FILE")
    path = shipped_path(seed)
    if path.exists():
        try:
            meta = verify_safetensors(path)
            if meta.get("version") == str(TINY_CLIP_VERSION) and meta.get("shipped"):
                return path
        except ValueError as e:
            log.warning("cached tiny CLIP refused, expanding the shipped weights again: %s", e)
    if not SHIPPED.is_file():
        raise FileNotFoundError(f"the shipped tiny CLIP {SHIPPED} is missing from this installation; make it with "
                                f"python -m r2bench.datasets.synthetic.tiny_clip --ship")
    data = lzma.decompress(SHIPPED.read_bytes())
    n = int.from_bytes(data[:8], "little")
    info = json.loads(data[8:8 + n]).get("__metadata__") or {}
    state = expand(load_bytes(data), json.loads(info["embedding_shape"]))
    if tensors_checksum(state) != info["expanded_checksum"]:
        raise ValueError(f"{SHIPPED}: the shipped tiny CLIP does not expand to the weights it was made from "
                         f"(damaged archive)")
    meta = {k: v for k, v in info.items() if k not in ("expanded_checksum", "embedding_shape")}
    return atomic_write(path, safetensors_bytes(state, {**meta, CHECKSUM_KEY: tensors_checksum(state)}))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"training steps, ≥ 1 (default {DEFAULT_STEPS})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--device", default="cpu", help="cpu (default: reproducible everywhere) or cuda")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--ship", action="store_true",
                   help=f"pretrain the default recipe (or take --from) and write the shipped archive {SHIPPED.name} "
                        f"(methods/weights/) that every run loads")
    p.add_argument("--from", dest="source", type=Path, help="with --ship: an existing checkpoint to ship")
    d = Recipe()
    p.add_argument("--model", default=d.model, help=f"open_clip config (default {d.model})")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--warmup", type=float, default=d.warmup, help="warm-up fraction of the steps")
    p.add_argument("--patch-dropout", type=float, default=d.patch_dropout,
                   help="FLIP patch dropout while pretraining (0: none)")
    p.add_argument("--max-objects", type=int, default=d.max_objects, help="objects per scene: 1..N")
    p.add_argument("--positives", choices=POSITIVES, default=d.positives,
                   help="positives: equal caption strings (default) or equal caption content")
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error(f"--steps must be at least 1 (got {args.steps}): zero steps would save an untrained model")
    recipe = Recipe(args.model, args.batch_size, args.lr, args.weight_decay, args.warmup, args.patch_dropout,
                    args.max_objects, args.positives)
    if recipe != d and args.out is None:
        p.error("a recipe other than the default needs --out (the cache path names the default recipe)")
    if args.ship and args.source is not None:
        print(f"shipped {ship(args.source)}")
        return
    if args.ship and (recipe != d or args.seed != 0 or args.steps != DEFAULT_STEPS):
        p.error("--ship pretrains the default recipe (seed 0); give --from FILE to ship another checkpoint")
    start, cpu = time.perf_counter(), time.process_time()
    path, acc = pretrain(args.seed, args.steps, args.out, args.device, progress=not args.quiet, recipe=recipe)
    print(f"saved {path} in {time.perf_counter() - start:.1f}s ({time.process_time() - cpu:.1f} CPU s)")
    print(f"held-out top-1 ({N_HELDOUT} scenes): image->text {100 * acc['i2t']:.1f}% "
          f"(chance {100 * acc['i2t_chance']:.1f}%), text->image {100 * acc['t2i']:.1f}% "
          f"(chance {100 * acc['t2i_chance']:.1f}%)")
    if args.ship:
        print(f"shipped {ship(path)}")


if __name__ == "__main__":
    import sys as _sys

    from r2bench.core.errors import guarded
    _sys.exit(guarded(main))
