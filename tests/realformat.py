"""Real-format fixtures, cheap and deterministic: files shaped like the ones users bring.

* :func:`openai_torchscript_archive` — a randomly initialised CLIP saved as OpenAI's CLIP
  release files are: a TorchScript archive of a module with OpenAI's parameter names and
  nesting (``visual.conv1``, ``visual.transformer.resblocks.N.attn.in_proj_weight``,
  ``transformer.…``, ``token_embedding``, ``ln_final``, ``text_projection``, ``logit_scale``),
  the ``input_resolution`` / ``context_length`` / ``vocab_size`` tensors beside them, and the
  release's mixed precision (projections in fp16, LayerNorms and embeddings in fp32). What
  ``clip.load`` and open_clip's OpenAI loader read (``torch.jit.load(…).state_dict()``), at any
  open_clip config's sizes: ``ViT-B-32-quickgelu`` is the size of OpenAI's ViT-B/32 release
  (~350 MB, as the real file), ``R2Bench-Tiny-quickgelu`` the project's tiny CLIP (~30 MB,
  most of it the token embedding). Heads are the config's (OpenAI's loaders infer width // 64,
  which for the tiny config builds other heads around the same weights).
* :func:`h264_videos` — H.264 mp4 files of given durations at 30 fps, small frames, a few
  visible events each (a coloured square over a moving background), written through
  imageio-ffmpeg's bundled ffmpeg: a 150-s video at 96×64 takes about 1 s (128×96: 1.4 s).
* :func:`qvhighlights_lines` / :func:`write_qvhighlights` — real QVHighlights validation lines
  (``tests/fixtures/qvhighlights_val_excerpt.jsonl``, CC BY-NC-SA 4.0, see
  ``tests/fixtures/ATTRIBUTION.md``) and a dataset folder with videos of their durations
  under their video ids.
"""
import json
import math
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Iterable, Optional, Tuple

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from torch import Tensor, nn

FIXTURES = Path(__file__).resolve().parent / "fixtures"
QVHIGHLIGHTS_VAL = FIXTURES / "qvhighlights_val_excerpt.jsonl"
OPENAI_ATTRIBUTES = ("input_resolution", "context_length", "vocab_size")


# --------------------------------------------------------------------------- OpenAI's release format

class LayerNorm(nn.LayerNorm):
    """LayerNorm in fp32 whatever the input's dtype (the release keeps LayerNorms in fp32)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x.float(), self.normalized_shape, self.weight, self.bias, self.eps).to(x.dtype)


class QuickGELU(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int, attn_mask: Optional[Tensor]):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)        # sequence-first, as in the release
        self.ln_1 = LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([("c_fc", nn.Linear(width, 4 * width)), ("gelu", QuickGELU()),
                                              ("c_proj", nn.Linear(4 * width, width))]))
        self.ln_2 = LayerNorm(width)
        self.attn_mask = attn_mask

    def forward(self, x: Tensor) -> Tensor:
        mask = self.attn_mask
        if mask is not None:
            mask = mask.to(x.dtype)
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, attn_mask: Optional[Tensor] = None):
        super().__init__()
        self.width, self.layers = width, layers
        self.resblocks = nn.Sequential(*[ResidualAttentionBlock(width, heads, attn_mask) for _ in range(layers)])

    def forward(self, x: Tensor) -> Tensor:
        return self.resblocks(x)


class VisionTransformer(nn.Module):
    def __init__(self, image_size: int, patch_size: int, width: int, layers: int, heads: int, output_dim: int):
        super().__init__()
        self.input_resolution, self.output_dim = image_size, output_dim
        self.conv1 = nn.Conv2d(3, width, patch_size, patch_size, bias=False)
        self.class_embedding = nn.Parameter(torch.empty(width))
        self.positional_embedding = nn.Parameter(torch.empty((image_size // patch_size) ** 2 + 1, width))
        self.ln_pre = LayerNorm(width)
        self.transformer = Transformer(width, layers, heads)
        self.ln_post = LayerNorm(width)
        self.proj = nn.Parameter(torch.empty(width, output_dim))

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x.to(self.conv1.weight.dtype)).flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, x.shape[-1])
        x = self.ln_pre(torch.cat([cls, x], 1) + self.positional_embedding.to(x.dtype))
        x = self.transformer(x.transpose(0, 1)).transpose(0, 1)
        return self.ln_post(x[:, 0]) @ self.proj


class CLIP(nn.Module):
    def __init__(self, embed_dim: int, image_size: int, patch_size: int, vision_width: int, vision_layers: int,
                 vision_heads: int, context_length: int, vocab_size: int, width: int, heads: int, layers: int):
        super().__init__()
        self.visual = VisionTransformer(image_size, patch_size, vision_width, vision_layers, vision_heads, embed_dim)
        causal = torch.full((context_length, context_length), float("-inf")).triu_(1)
        self.transformer = Transformer(width, layers, heads, causal)
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.empty(context_length, width))
        self.ln_final = LayerNorm(width)
        self.text_projection = nn.Parameter(torch.empty(width, embed_dim))
        self.logit_scale = nn.Parameter(torch.ones([]))
        for name, value in zip(OPENAI_ATTRIBUTES, (image_size, context_length, vocab_size)):
            self.register_buffer(name, torch.tensor(value))

    def encode_image(self, image: Tensor) -> Tensor:
        return self.visual(image)

    def encode_text(self, text: Tensor) -> Tensor:
        dtype = self.visual.conv1.weight.dtype
        x = (self.token_embedding(text) + self.positional_embedding).to(dtype)
        x = self.ln_final(self.transformer(x.transpose(0, 1)).transpose(0, 1))
        return x[torch.arange(x.shape[0]), text.argmax(dim=-1)] @ self.text_projection

    def forward(self, image: Tensor, text: Tensor) -> Tuple[Tensor, Tensor]:
        a = self.encode_image(image)
        b = self.encode_text(text)
        a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
        logits = self.logit_scale.exp() * a @ b.t()
        return logits, logits.t()


def openai_clip(config: str = "ViT-B-32-quickgelu", seed: int = 0) -> CLIP:
    """OpenAI's CLIP structure at the sizes of open_clip config ``config`` (a ViT), randomly
    initialised from ``seed``, in the release's mixed precision."""
    cfg = open_clip.get_model_config(config)
    if cfg is None:
        raise ValueError(f"unknown open_clip config {config!r}")
    v, t = cfg["vision_cfg"], cfg["text_cfg"]
    if not isinstance(v.get("layers"), int) or "timm_model_name" in v or "hf_model_name" in t:
        raise ValueError(f"{config}: OpenAI's release format holds ViTs with CLIP's own text tower only")
    image = v.get("image_size", 224)
    image = image if isinstance(image, int) else image[0]
    vision_width = v.get("width", 768)
    model = CLIP(cfg["embed_dim"], image, v["patch_size"], vision_width, v["layers"],
                 vision_width // v.get("head_width", 64), t.get("context_length", 77), t.get("vocab_size", 49408),
                 t.get("width", 512), t.get("heads", 8), t.get("layers", 12))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name.endswith(("ln_pre.weight", "ln_post.weight", "ln_final.weight", "ln_1.weight", "ln_2.weight")):
                p.fill_(1.0)
            elif name.endswith("bias"):
                p.zero_()
            elif name == "logit_scale":
                p.fill_(math.log(1 / 0.07))
            else:
                p.copy_(torch.randn(p.shape, generator=g) * (0.02 if p.ndim > 1 and "embedding" not in name
                                                                else p.shape[-1] ** -0.5))
    _release_precision(model)
    return model.eval()


def _release_precision(model: nn.Module) -> None:
    """fp16 for what the release stores in fp16: convolution and linear weights and biases,
    attention projections, ``proj`` and ``text_projection``; the rest stays fp32."""
    for module in model.modules():
        names = []
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            names += ["weight", "bias"]
        if isinstance(module, nn.MultiheadAttention):
            names += ["in_proj_weight", "in_proj_bias"]
        names += [n for n in ("proj", "text_projection") if isinstance(getattr(module, n, None), nn.Parameter)]
        for n in names:
            p = getattr(module, n, None)
            if isinstance(p, nn.Parameter):
                p.data = p.data.half()


def openai_torchscript_archive(path: str | Path, config: str = "ViT-B-32-quickgelu", seed: int = 0) -> Path:
    """Write :func:`openai_clip` to ``path`` as OpenAI's release files are: a TorchScript archive
    of the model traced through ``forward``, ``encode_image`` and ``encode_text`` (the release's
    traced graphs, ``forward1`` and all, that ``clip.load(jit=True)`` patches)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = openai_clip(config, seed)
    size, length = int(model.input_resolution), int(model.context_length)
    image, text = torch.zeros(1, 3, size, size), torch.zeros(1, length, dtype=torch.long)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)       # torch.jit's deprecation notice
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace_module(model, dict(forward=(image, text), encode_image=(image,), encode_text=(text,)),
                                        check_trace=False)
        torch.jit.save(traced, str(path))
    return path


# --------------------------------------------------------------------------- videos

def _frames(duration: float, fps: float, size: tuple[int, int], events: list[tuple[float, float, tuple]], seed: int):
    """Frames of a drifting two-tone background; during each event a coloured square moves across."""
    w, h = size
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 200, size=3)
    ramp = np.linspace(0, 1, w, dtype=np.float32)[None, :, None]
    for i in range(round(duration * fps)):
        t = i / fps
        shift = (t * 7) % w
        frame = (base * (0.6 + 0.4 * np.roll(ramp, int(shift), axis=1))).astype(np.uint8)
        frame = np.broadcast_to(frame, (h, w, 3)).copy()
        for start, end, colour in events:
            if start <= t < end:
                side = max(8, h // 3)
                x = int((t - start) / max(end - start, 1e-6) * (w - side))
                y = (h - side) // 2
                frame[y:y + side, x:x + side] = colour
        yield frame


def h264_videos(folder: str | Path, durations: Iterable[float] | dict[str, float], fps: float = 30,
                size: tuple[int, int] = (96, 64), seed: int = 0, names: Iterable[str] | None = None) -> list[Path]:
    """Write one H.264 mp4 per duration (seconds) into ``folder``: ``names`` (or the keys of a
    ``durations`` dict; else ``video000`` …) as file stems. Each has a few events (a coloured
    square crossing the frame) at times drawn from ``seed``, so frames and features differ over
    time. yuv420p, libx264 ``veryfast`` with its default GOP and B-frames, as web videos are."""
    import imageio_ffmpeg

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(durations, dict):
        names, durations = list(durations), list(durations.values())
    durations = [float(d) for d in durations]
    names = list(names) if names is not None else [f"video{i:03d}" for i in range(len(durations))]
    if len(names) != len(durations):
        raise ValueError(f"{len(names)} names for {len(durations)} durations")
    paths = []
    for k, (name, duration) in enumerate(zip(names, durations)):
        rng = np.random.default_rng([seed, k])
        events = []
        for _ in range(3):
            start = float(rng.uniform(0, max(duration - 10, 1)))
            events.append((start, start + float(rng.uniform(4, 20)), tuple(int(c) for c in rng.integers(0, 256, 3))))
        path = folder / f"{name}.mp4"
        writer = imageio_ffmpeg.write_frames(str(path), size, fps=fps, codec="libx264", pix_fmt_out="yuv420p",
                                             output_params=["-preset", "veryfast"], macro_block_size=1,
                                             ffmpeg_log_level="error")
        writer.send(None)
        for frame in _frames(duration, fps, size, events, seed + k):
            writer.send(frame)
        writer.close()
        paths.append(path)
    return paths


# --------------------------------------------------------------------------- QVHighlights annotations

def qvhighlights_lines(n: int | None = None) -> list[dict]:
    """The first ``n`` (all 20 by default) real QVHighlights validation lines, unmodified."""
    lines = [json.loads(s) for s in QVHIGHLIGHTS_VAL.read_text().splitlines() if s.strip()]
    return lines[:n]


def write_qvhighlights(root: str | Path, n: int | None = 4, fps: float = 30, size: tuple[int, int] = (96, 64),
                       split: str = "val", seed: int = 0) -> dict:
    """A QVHighlights-shaped dataset folder: ``root/annotations/highlight_{split}_release.jsonl``
    holding the first ``n`` real validation lines, and ``root/videos/<vid>.mp4`` for each of
    their videos, as long as the line's ``duration`` says (H.264, :func:`h264_videos`).
    Returns ``dict(annotations, videos, lines)``."""
    root = Path(root)
    lines = qvhighlights_lines(n)
    annotations = root / "annotations"
    annotations.mkdir(parents=True, exist_ok=True)
    (annotations / f"highlight_{split}_release.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    durations = {}
    for line in lines:
        durations.setdefault(line["vid"], float(line["duration"]))
    h264_videos(root / "videos", durations, fps=fps, size=size, seed=seed)
    return dict(annotations=annotations, videos=root / "videos", lines=lines)
