"""LoRA (Hu et al., ICLR 2022), Table 9 row "LoRA (r=16)": rank-16 adapters injected into
CLIP by Hugging Face ``peft`` (``inject_adapter_in_model``), the shared head on the last layer.

Configuration. Rank 16 is the paper's; the rest is not given, so:

* ``lora_targets`` (default ``"visual_mlp"``): which CLIP modules get adapters —
  ``"visual_mlp"`` the ``mlp.c_fc``/``mlp.c_proj`` Linears of the visual blocks;
  ``"visual_attn"`` / ``"attn_both"`` the attention modules (``nn.MultiheadAttention``: fused
  in-projection and out-projection together) of the visual / both towers; ``"visual_all"``
  visual attention and MLP. A LoRA on ``attn.out_proj`` alone would be dead weight (the
  attention module never calls ``out_proj.forward``), so no option targets it.
* ``lora_alpha`` = 16 = r (scaling 1): LoRA §4.1 sets α to the first r tried and does not tune
  it. ``lora_dropout`` = 0.0 (peft's default). peft applies no dropout to attention adapters.

Counts at ViT-B/32 (head 2,836,236), paper 4.4:

====================  ==========  ============
targets               extra       total (2^20)
====================  ==========  ============
visual_mlp (default)  1,474,560   4.111
attn_both             1,474,560   4.111
visual_attn             884,736   3.549
visual_all            2,359,296   4.955
====================  ==========  ============

The paper's 4.4 fits visual ``out_proj`` + ``c_fc`` + ``c_proj`` (1,769,472 → 4.392), i.e. the
Linears peft could reach in open_clip before it supported ``nn.MultiheadAttention`` (v0.15);
the 294,912 ``out_proj`` parameters of that setting never act, so the model it trains is the
visual-MLP LoRA we default to (4.111, −6.6 % of 4.4).

peft's attention adapter (``lora.MultiheadAttention``, peft 0.21) merges the LoRA deltas into
the frozen weights before each forward and subtracts them afterwards. That (1) adds the
out-projection delta twice in the forward pass (W + 2ΔW; the gradient is that of W + ΔW —
huggingface/peft PR #3774) and (2) leaves the frozen weights off by float rounding after every
step. :func:`_exact_attention_forward` replaces that forward on each injected attention module:
the same peft parameters and ``get_delta_weight``, applied once, out of place, through
``torch.func.functional_call`` — the frozen CLIP weights are never written
(tests/test_baselines_petl.py checks both).
"""
from __future__ import annotations

import types
from dataclasses import dataclass

from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.lora.layer import MultiheadAttention as LoraMultiheadAttention
from torch.func import functional_call

from r2bench.methods.backbone import Backbone
from r2bench.methods.head import HeadConfig
from r2bench.methods.model import TransferModel
from r2bench.methods.registry import register

_VISUAL = r"visual\.transformer\.resblocks\.\d+\."
LORA_TARGETS = {
    "visual_mlp": _VISUAL + r"mlp\.c_(fc|proj)",
    "visual_attn": _VISUAL + r"attn",
    "attn_both": r"(visual\.)?transformer\.resblocks\.\d+\.attn",
    "visual_all": _VISUAL + r"(attn|mlp\.c_fc|mlp\.c_proj)",
}


@dataclass
class LoraTuningConfig(HeadConfig):
    """HeadConfig with K=1, plus LoRA's rank, scaling, dropout and target modules."""

    k: int = 1
    lora_rank: int = 16
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: str = "visual_mlp"

    def __post_init__(self):
        super().__post_init__()
        if self.lora_targets not in LORA_TARGETS:
            raise ValueError(f"lora_targets must be one of {sorted(LORA_TARGETS)}, got {self.lora_targets!r}")
        if self.lora_rank < 1 or not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"need lora_rank ≥ 1 and 0 ≤ lora_dropout < 1, got {self.lora_rank}, {self.lora_dropout}")


def _exact_attention_forward(self: LoraMultiheadAttention, query, *args, **kwargs):
    """peft's attention adapter without merging: W + ΔW once, the frozen weights untouched."""
    adapters = [a for a in self.active_adapters if a in self.lora_A]
    base = self.get_base_layer()
    if self.disable_adapters or self.merged or not adapters:
        return LoraMultiheadAttention.forward(self, query, *args, **kwargs)
    out_proj = base.out_proj
    w_in, w_out = base.in_proj_weight, out_proj.get_base_layer().weight
    for name in adapters:
        w_in = w_in + self.get_delta_weight(name).to(w_in.dtype)
        w_out = w_out + out_proj.get_delta_weight(name).to(w_out.dtype)
    return functional_call(base, {"in_proj_weight": w_in, "out_proj.base_layer.weight": w_out},
                           (query, *args), kwargs)


@register("lora", label="LoRA (r=16)", category="PETL", config=LoraTuningConfig)
def build(backbone: Backbone, cfg: LoraTuningConfig) -> TransferModel:
    config = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                        target_modules=LORA_TARGETS[cfg.lora_targets], bias="none")
    inject_adapter_in_model(config, backbone.clip)
    for module in backbone.clip.modules():
        if isinstance(module, LoraMultiheadAttention):
            module.forward = types.MethodType(_exact_attention_forward, module)
    return TransferModel(backbone, cfg, backbone_grad=True)
