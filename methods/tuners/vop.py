"""VoP (Huang et al., CVPR 2023, arXiv 2211.12764), Table 9 row "VoP": prompts in every layer
of both CLIP towers, plus VoP's video prompts. Default: its strongest variant, VoP^{F+C}
(MSR-VTT-9k t2v R@1 44.6 against 41.7 for full fine-tuning, VoP Table 1).

What VoP specifies (§3.2, §3.3, §4.1), and how it is built here:

* Basic VoP: P = 8 prompt tokens per layer in each tower, normal init (std 0.02, the
  authors' basic-VoP release: ``modelscope/models/cv/vop_retrieval/model.py``@22242ee).
  Visual prompts sit after CLS and are replaced at every layer. Text: VoP writes [P, W]
  (Eq. 3); the release puts 4 prompts after start-of-text and 4 at the end of the 77 columns,
  where CLIP's causal mask lets them reach no token. Here the 4 "suffix" prompts sit just
  before each query's end-of-text token (which they then reach) — our choice. Prompts are
  replaced at every layer and stripped before the head, which reads the text tokens at their
  original positions. Prompts enter after the embeddings and get no positional embedding, as
  in VPT (the release inserts visual prompts before ``ln_pre`` and adds positional embeddings
  to text prompts).
* C, context-specific prompts (Eq. 6–8): in each frame-level layer the CLS tokens of a
  video's frames go through a context modelling module — a 1-layer BiLSTM (VoP's choice,
  Table 3) — and a fully connected layer maps each frame's output to 4 prompt tokens that
  replace 4 of the 8 prompts of that frame. BiLSTM and FC are shared by all layers. VoP does
  not give the LSTM's width: ``vop_lstm_hidden`` = None uses the visual width, which
  reproduces VoP^C's printed count (table below).
* P, position-specific prompts (Eq. 5): those 4 prompts are taken per frame position from a
  table of ``vop_max_frames`` positions.
* F, function-specific prompts (Eq. 9): the last ``vop_joint_layers`` = 12 − K^s = 4 visual
  layers (K^s = 8) attend over the tokens of all frames of a video at once, with 8
  video-level prompts per layer, after a trainable frame positional embedding (we give it
  ``vop_max_frames`` rows, normal init std 0.02) is added to every token. Padded frames are
  hidden from that attention by a key-padding mask, and from the BiLSTM by running its
  backward direction over each video's real frames only (two unidirectional LSTMs: the same
  parameters as ``nn.LSTM(bidirectional=True)``, which would read the padded frames first).
  Real frames precede padded ones (as ``datasets.vtg.collate`` pads).
* VoP^{F+C} = F, with C in the K^s frame-level layers (``vop_variant``: basic, P, C, F, F+P, F+C).

VoP does not state the frame embedding's init, the LSTM width, or where text prompts go
relative to start/end-of-text; those choices are ours (above).

Optimiser: VoP trains with AdamW, weight decay 0.2 on everything (§4.1), so prompts use the
recipe's weight decay; ``vop_prompt_weight_decay`` gives them their own.

Counts at ViT-B/32 (head 2,836,236; T_max = 75 frames), beside VoP's own Table 1 (12 frames,
no head, % of the 119.8 M it prints for full fine-tuning):

=========  ==========  ============  ===================  ==================================
variant    extra       total (2^20)  VoP Table 1          ours at 12 frames, no frame embed.
=========  ==========  ============  ===================  ==================================
basic         122,880  2.822         0.1 M  (0.103 %)        122,880 (0.103 %)
C          14,257,152  16.302        14.3 M (11.898 %)    14,257,152 (11.90 %)
F+C        14,327,040  16.368        14.1 M (11.785 %)    14,269,440 (11.91 %)
=========  ==========  ============  ===================  ==================================

VoP^{F+C} = text 49,152 + frame-level prompts 8 × 4 × 768 + video-level 4 × 8 × 768 + frame
embedding 75 × 768 + BiLSTM 9,449,472 + FC 4,721,664. Our reading reproduces VoP's basic, P
(0.441 %), F+P (0.328 %) and C figures but not F+C, which VoP prints ≈ 135 K below C although
F+C only adds parameters to C in VoP's own description; VoP^F's 0.103 % (= basic) suggests
VoP left the frame embedding out of its counts. The R² paper's row says 14.5 × 2^20 (≈ 12.37 M
besides the head), which no VoP variant gives with the head; VoP's own 14.1–14.3 M (10^6, no
head) are the nearest figures.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from r2bench.methods.backbone import Backbone
from r2bench.methods.head import HeadConfig
from r2bench.methods.hooks import BlockHooks, TowerContext
from r2bench.methods.model import ParamGroup, TransferModel
from r2bench.methods.registry import register

VARIANTS = ("basic", "P", "C", "F", "F+P", "F+C")
PROMPT_STD = 0.02


@dataclass
class VoPConfig(HeadConfig):
    """HeadConfig with K=1, plus VoP's variant and sizes (VoP §4.1 defaults)."""

    k: int = 1
    vop_variant: str = "F+C"
    vop_prompts: int = 8                # P^v = P^t: prompt tokens per layer and tower
    vop_video_prompts: int = 4          # of the P^v visual prompts, how many are position/context-specific
    vop_joint_layers: int = 4           # F: the last K − K^s visual layers attend over whole videos
    vop_max_frames: int = 75            # F, P: frame positions with their own parameters
    vop_lstm_hidden: int | None = None  # C: BiLSTM width per direction (None: the visual width)
    vop_prompt_weight_decay: float | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.vop_variant not in VARIANTS:
            raise ValueError(f"vop_variant must be one of {VARIANTS}, got {self.vop_variant!r}")
        if not 1 <= self.vop_video_prompts <= self.vop_prompts or self.vop_prompts < 2:
            raise ValueError(f"need 2 ≤ vop_prompts and 1 ≤ vop_video_prompts ≤ vop_prompts, "
                             f"got {self.vop_prompts}, {self.vop_video_prompts}")
        if self.vop_joint_layers < 1 or self.vop_max_frames < 1:
            raise ValueError("vop_joint_layers and vop_max_frames must be ≥ 1")


class ContextModule(nn.Module):
    """VoP's context modelling module and prompt generator: a 1-layer BiLSTM over the CLS tokens
    of a video's frames, then one linear layer to ``count`` prompt tokens per frame."""

    def __init__(self, width: int, hidden: int, count: int):
        super().__init__()
        self.count = count
        self.forward_lstm = nn.LSTM(width, hidden, batch_first=True)
        self.backward_lstm = nn.LSTM(width, hidden, batch_first=True)
        self.fc = nn.Linear(2 * hidden, count * width)

    def forward(self, cls: Tensor, frame_mask: Tensor | None) -> Tensor:
        """CLS tokens (B, T, D), real-frame mask (B, T) → prompts (B·T, count, D)."""
        b, t, d = cls.shape
        steps = torch.arange(t, device=cls.device).expand(b, t)
        if frame_mask is None:
            order = steps.flip(-1)
        else:   # reverse each video's real frames, keep its padded frames in place (after them)
            length = frame_mask.sum(-1, keepdim=True)
            order = torch.where(steps < length, length - 1 - steps, steps)
        gather = order[..., None].expand(b, t, d)
        backward, _ = self.backward_lstm(cls.gather(1, gather))
        backward = backward.gather(1, order[..., None].expand(b, t, backward.shape[-1]))
        forward, _ = self.forward_lstm(cls)
        out = self.fc(torch.cat([forward, backward], dim=-1).to(cls.dtype))
        return out.reshape(b * t, self.count, d)


class VoPHooks(BlockHooks):
    """VoP's prompts in both towers; the visual part follows ``variant`` (see the module doc)."""

    towers = ("video", "text")

    def __init__(self, backbone: Backbone, cfg: VoPConfig):
        super().__init__()
        depth, dv, dt = backbone.depth, backbone.video_width, backbone.text_width
        variant = cfg.vop_variant
        self.count = cfg.vop_prompts
        self.joint = "F" in variant
        self.position = "P" in variant
        self.context = "C" in variant
        self.frame_layers = depth - cfg.vop_joint_layers if self.joint else depth   # K^s
        if self.frame_layers < 1:
            raise ValueError(f"vop_joint_layers={cfg.vop_joint_layers} leaves no frame-level layer in a "
                             f"{depth}-layer backbone (VoP: all-joint training collapses)")
        self.max_frames = cfg.vop_max_frames
        specific = cfg.vop_video_prompts if (self.position or self.context) else 0
        self.specific = specific

        def normal(*shape):
            return nn.Parameter(torch.empty(*shape).normal_(std=PROMPT_STD))

        self.text_prompts = normal(len(backbone.text_blocks), self.count, dt)
        self.frame_prompts = normal(self.frame_layers, self.count - specific, dv)
        self.position_prompts = normal(cfg.vop_max_frames, self.frame_layers, specific, dv) if self.position else None
        self.context_module = (ContextModule(dv, cfg.vop_lstm_hidden or dv, specific) if self.context else None)
        if self.joint:
            self.video_prompts = normal(depth - self.frame_layers, self.count, dv)
            self.frame_embedding = normal(cfg.vop_max_frames, dv)
        else:
            self.video_prompts = self.frame_embedding = None

    def prompt_parameters(self) -> list[nn.Parameter]:
        """The prompt tensors (not the context module)."""
        return [p for p in (self.text_prompts, self.frame_prompts, self.position_prompts, self.video_prompts,
                            self.frame_embedding) if p is not None]

    # ---- video --------------------------------------------------------------------------
    def _frames(self, n: int, ctx: TowerContext) -> int:
        t = ctx.frames_per_video or n
        if (self.joint or self.position) and t > self.max_frames:
            raise ValueError(f"VoP ({'F' if self.joint else 'P'}) has parameters for {self.max_frames} frame "
                             f"positions (vop_max_frames); got videos of {t} frames")
        return t

    def _frame_level(self, index: int, x: Tensor, ctx: TowerContext) -> Tensor:
        n = x.shape[0]
        rest = x[:, 1:] if index == 0 else x[:, 1 + self.count:]
        prompts = [self.frame_prompts[index].to(x.dtype).expand(n, -1, -1)]
        if self.position:
            t = self._frames(n, ctx)
            frame_index = torch.arange(n, device=x.device) % t
            prompts.append(self.position_prompts[:, index][frame_index].to(x.dtype))
        if self.context:
            t = self._frames(n, ctx)
            prompts.append(self.context_module(x[:, 0].reshape(n // t, t, -1), ctx.frame_mask).to(x.dtype))
        return torch.cat([x[:, :1], *prompts, rest], dim=1)

    def _join_frames(self, x: Tensor, ctx: TowerContext) -> Tensor:
        """Frame rows (B·T, 1 + P + N, D) → one sequence per video (B, P + T·(1 + N), D)."""
        n = x.shape[0]
        t = self._frames(n, ctx)
        frames = torch.cat([x[:, :1], x[:, 1 + self.count:]], dim=1)
        frames = frames + self.frame_embedding[:t].to(x.dtype).repeat(n // t, 1)[:, None]
        tokens = frames.shape[1]
        ctx.state["vop_frame_tokens"] = tokens
        if ctx.frame_mask is not None:
            hidden = ~ctx.frame_mask.bool()[:, :, None].expand(-1, -1, tokens).reshape(n // t, t * tokens)
            ctx.key_padding_mask = torch.cat([hidden.new_zeros(n // t, self.count), hidden], dim=1)
        video = frames.reshape(n // t, t * tokens, -1)
        return torch.cat([self.video_prompts[0].to(x.dtype).expand(n // t, -1, -1), video], dim=1)

    # ---- text ---------------------------------------------------------------------------
    def _text_insert(self, tokens: Tensor, prompts: Tensor, eot: Tensor) -> Tensor:
        """Tokens (B, L, D) with ``prompts`` (P, D): half after start-of-text, half before each
        query's end-of-text ``eot`` (B,) → (B, L + P, D)."""
        b, length, d = tokens.shape
        pre, post = self.count // 2, self.count - self.count // 2
        j = torch.arange(length + self.count, device=tokens.device)[None]
        e = eot[:, None]
        source = torch.where(j == 0, 0,
                 torch.where(j <= pre, length + j - 1,
                 torch.where(j < e + pre, j - pre,
                 torch.where(j < e + self.count, length + j - e, j - self.count))))
        extended = torch.cat([tokens, prompts.to(tokens.dtype).expand(b, -1, -1)], dim=1)
        return extended.gather(1, source[..., None].expand(-1, -1, d))

    def _text_positions(self, ctx: TowerContext) -> Tensor:
        """Where each of the original L tokens sits after insertion (B, L)."""
        mask = ctx.text_mask
        k = torch.arange(mask.shape[1], device=mask.device)[None]
        eot = mask.sum(-1, keepdim=True) - 1
        return torch.where(k == 0, 0, torch.where(k < eot, k + self.count // 2, k + self.count))

    def _text_original(self, x: Tensor, ctx: TowerContext) -> Tensor:
        index = ctx.state["vop_text_positions"]
        return x.gather(1, index[..., None].expand(-1, -1, x.shape[-1]))

    # ---- hook points --------------------------------------------------------------------
    def block_input(self, index: int, x: Tensor, ctx: TowerContext) -> Tensor:
        if ctx.tower == "text":
            if index == 0:
                ctx.state["vop_text_positions"] = self._text_positions(ctx)
            else:
                x = self._text_original(x, ctx)
            return self._text_insert(x, self.text_prompts[index], ctx.text_mask.sum(-1) - 1)
        if index < self.frame_layers:
            return self._frame_level(index, x, ctx)
        if index == self.frame_layers:
            return self._join_frames(x, ctx)
        prompts = self.video_prompts[index - self.frame_layers].to(x.dtype).expand(x.shape[0], -1, -1)
        return torch.cat([prompts, x[:, self.count:]], dim=1)

    def tap(self, index: int, point: str, x: Tensor, ctx: TowerContext) -> Tensor:
        if index < 0:
            return x
        if ctx.tower == "text":
            return self._text_original(x, ctx)
        if index < self.frame_layers:
            return torch.cat([x[:, :1], x[:, 1 + self.count:]], dim=1)
        tokens = ctx.state["vop_frame_tokens"]
        return x[:, self.count:].reshape(-1, tokens, x.shape[-1])


class VoPModel(TransferModel):
    """TransferModel whose prompts may have their own weight decay."""

    def __init__(self, *args, prompt_weight_decay: float | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.prompt_weight_decay = prompt_weight_decay

    def param_groups(self) -> list[ParamGroup]:
        prompts = [p for p in self.hooks.prompt_parameters() if p.requires_grad]
        ids = {id(p) for p in prompts}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in ids]
        return [ParamGroup("prompts", prompts, weight_decay=self.prompt_weight_decay), ParamGroup("rest", rest)]


@register("vop", label="VoP", category="PETL", config=VoPConfig)
def build(backbone: Backbone, cfg: VoPConfig) -> TransferModel:
    return VoPModel(backbone, cfg, backbone_grad=True, hooks=VoPHooks(backbone, cfg),
                    prompt_weight_decay=cfg.vop_prompt_weight_decay)
