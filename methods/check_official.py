"""Check the head under the ``official`` protocol against a golden fixture case made with the
authors' public code (../shared/data/official_fixtures/<case>/, described in its README.md).

    python -m r2bench.methods.check_official CASE_DIR [CASE_DIR ...]

Prints JSON: for every expected tensor, the largest absolute difference and whether it is
within the tolerance (1e-4, float32; masks, points and classification targets exactly).
Exit status 0 only when every tensor of every case is within.

* weights: ``weights.safetensors`` (official names, float16 storage of exact values) → float32,
  mapped onto ``GroundingHead`` by ``name_map.json`` (``copy`` / ``flip`` / ``rows``);
* video = ``video_bank[video_index]``;
* eval cases: each sample alone on ``[:, :T_i]`` with text ``[:, :, :Lt_i]``, in eval mode, then
  decoded with the case's post-processing. The same samples are also run as one padded batch
  (section ``batched``), which must give the same numbers (batch-independent evaluation);
* loss cases: the padded batch in training semantics with dropout off, with the case's
  ``pos_clip``; compared at real clips / valid points;
* rows of the final windows with exactly equal expected scores (the zeros of hard NMS) have
  no defined order, so they are compared as a set.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from r2bench.methods.head import (PROTOCOLS, GroundingHead, HeadConfig, assign_targets, decode_sample, head_losses, output_saliency,
                          regression_range, widen_windows)

TOLERANCE = 1e-4
EXACT = ("mask.", "points", "cls_target")


class CaseError(ValueError):
    """A fixture folder that cannot be read as a case."""


def read_case(case_dir: str | Path) -> dict:
    case_dir = Path(case_dir)
    files = {n: case_dir / n for n in ("meta.json", "name_map.json", "weights.safetensors", "inputs.safetensors",
                                       "expected.safetensors", "expected.json")}
    missing = [n for n, p in files.items() if not p.is_file()]
    if missing:
        raise CaseError(f"{case_dir}: not a fixture case, missing {missing}")
    return dict(dir=case_dir, meta=json.loads(files["meta.json"].read_text()),
                name_map=json.loads(files["name_map.json"].read_text()),
                weights=load_file(str(files["weights.safetensors"])), inputs=load_file(str(files["inputs.safetensors"])),
                expected=load_file(str(files["expected.safetensors"])),
                expected_json=json.loads(files["expected.json"].read_text()))


def config_for(meta: dict, overrides: dict | None = None) -> HeadConfig:
    """The ``official`` protocol at the case's preset (NMS kind, rounding unit, loss weights),
    with ``overrides`` (e.g. ``protocol="paper"``, to see how far another choice lands)."""
    c, post = meta["config"], meta.get("postprocessing", {})
    nms_kind = post.get("nms_cfg", {}).get("type", "normal")
    weights = c["loss_weights"]
    kwargs = dict(
        k=c["k"], hidden=c["hidden"], heads=c["heads"], ffn=c["hidden"] * c["ffn_ratio"],
        strides=tuple(c["strides"]), use_tef=c["use_tef"], dropout=c["dropout"], drop_path=c["droppath"],
        max_windows=c["max_num_moment"], nms={"normal": "hard", "linear": "linear"}[nms_kind],
        window_unit=post.get("rounding_unit"),
        focal_gamma=c["focal"]["gamma"], temperature=c["temperature"], cls_weight=weights["cls"],
        reg_weight=weights["reg"] / 2,   # the public 0.2 is on the mean of the two distances; ours on the sum
        saliency_weight=weights["saliency"], video_calibration_weight=weights["video_calibration"],
        layer_calibration_weight=weights["layer_calibration"])
    if post.get("nms_threshold") is not None:    # None for linear soft-NMS (no threshold)
        kwargs["nms_threshold"] = post["nms_threshold"]
    # protocol fields the case states: left to the protocol when they agree with it
    alpha = c["focal"]["alpha"]
    stated = dict(focal_alpha=None if alpha < 0 else alpha)
    kwargs.update({k: v for k, v in stated.items() if v != PROTOCOLS["official"][k]})
    kwargs["merge_cls_saliency"] = c["merge_cls_sal"]   # False (HD configs): the cls score alone
    kwargs.update(overrides or {})
    return HeadConfig(**kwargs)


def load_head(case: dict, overrides: dict | None = None) -> GroundingHead:
    """A GroundingHead holding the case's weights (float32)."""
    c = case["meta"]["config"]
    head = GroundingHead(c["video_dim"], c["text_dim"], config_for(case["meta"], overrides))
    state = head.state_dict()
    filled: dict[str, int] = {}
    for name, entry in case["name_map"].items():
        src, ours = case["weights"][name].float(), entry["ours"]
        if ours not in state:
            raise CaseError(f"name_map.json: '{ours}' (for '{name}') is not a GroundingHead parameter")
        if entry["op"] == "copy":
            state[ours].copy_(src)
            filled[ours] = filled.get(ours, 0) + src.numel()
        elif entry["op"] == "flip":
            state[ours].copy_(src.flip(0))
            filled[ours] = filled.get(ours, 0) + src.numel()
        elif entry["op"] == "rows":
            a, b = entry["rows"]
            state[ours][a:b].copy_(src)
            filled[ours] = filled.get(ours, 0) + src.numel()
        else:
            raise CaseError(f"name_map.json: unknown op {entry['op']!r} for '{name}'")
    unfilled = [n for n, p in head.named_parameters() if filled.get(n, 0) != p.numel()]
    if unfilled:
        raise CaseError(f"name_map.json leaves parameters unset or set twice: {unfilled}")
    head.load_state_dict(state)
    return head.eval()


def _video(inputs: dict) -> torch.Tensor:
    return inputs["video_bank"][inputs["video_index"].long()]


def _diff(ours: torch.Tensor, expected: torch.Tensor, exact: bool = False) -> dict:
    ours, expected = ours.detach().float().cpu(), expected.float()
    if ours.shape != expected.shape:
        return dict(max_abs_diff=None, ok=False, error=f"shape {tuple(ours.shape)} != expected {tuple(expected.shape)}")
    gap = torch.where(ours == expected, 0.0, (ours - expected).abs())    # equal infinities: 0
    d = float(gap.nan_to_num(0.0).max()) if ours.numel() else 0.0
    both_nan = bool((ours.isnan() == expected.isnan()).all())
    return dict(max_abs_diff=d, ok=both_nan and (d == 0 if exact else d <= TOLERANCE))


def _rows_diff(ours: torch.Tensor, expected: torch.Tensor) -> dict:
    """Final windows: in order, except runs of exactly equal expected scores, compared as sets."""
    if ours.shape != expected.shape:
        return dict(max_abs_diff=None, ok=False, error=f"shape {tuple(ours.shape)} != expected {tuple(expected.shape)}")
    ours, expected = ours.clone(), expected.clone()
    scores, start = expected[:, 2], 0
    for i in range(1, len(scores) + 1):
        if i == len(scores) or scores[i] != scores[start]:
            if i - start > 1:
                for t in (ours, expected):
                    block = t[start:i]
                    key = block[:, 0] * 1e6 + block[:, 1]
                    t[start:i] = block[key.argsort(stable=True)]
            start = i
    out = _diff(ours, expected)
    out["equal_score_rows_as_set"] = int((scores[1:] == scores[:-1]).sum())
    return out


@torch.no_grad()
def check_eval_case(case: dict, overrides: dict | None = None, batched: bool = True) -> dict:
    head, inputs, expected = load_head(case, overrides), case["inputs"], case["expected"]
    cfg = head.cfg
    video, text = _video(inputs), inputs["text"]
    report, batched_report = {}, {}
    batch_out = head(video, inputs["video_mask"], text, inputs["text_mask"]) if batched else None
    batch_sal = output_saliency(batch_out, cfg) if batched else None
    for i, (t, lt) in enumerate(zip(inputs["lengths"].tolist(), inputs["text_lengths"].tolist())):
        fps, duration = float(inputs["fps"][i]), float(inputs["duration"][i])
        runs = [("alone", head(video[i:i + 1, :t], torch.ones(1, t, dtype=torch.bool), text[i:i + 1, :, :lt],
                               torch.ones(1, lt, dtype=torch.bool)), 0, None)]
        if batched:
            runs.append(("batched", batch_out, i, batch_sal))
        for section, out, row, sal in runs:
            target = report if section == "alone" else batched_report
            if sal is None:
                sal = output_saliency(out, cfg)
            got = {f"s{i}.h": out.h[row, :t], f"s{i}.query": out.query[row], f"s{i}.saliency_cos": out.saliency[row, :t]}
            for level in out.levels:
                n = t // level["stride"]
                if n == 0:
                    continue
                got[f"s{i}.cls.l{level['index']}"] = level["cls"][row, :n]
                got[f"s{i}.reg.l{level['index']}"] = level["reg"][row, :n]
            d = decode_sample(out, row, fps, duration, cfg, sal)
            got[f"s{i}.saliency"], got[f"s{i}.boundary_raw"] = d["saliency"], d["raw"]
            for name in [n for n in expected if n.startswith(f"s{i}.")]:
                if name.endswith(".windows"):
                    target[name] = _rows_diff(d["windows"], expected[name])
                elif name not in got:
                    target[name] = dict(max_abs_diff=None, ok=False, error="not produced")
                else:
                    target[name] = _diff(got[name], expected[name])
    return dict(tensors=report, batched=batched_report)


@torch.no_grad()
def check_loss_case(case: dict, overrides: dict | None = None) -> dict:
    head, inputs, expected = load_head(case, overrides), case["inputs"], case["expected"]
    cfg = head.cfg
    vmask = inputs["video_mask"]
    out = head(_video(inputs), vmask, inputs["text"], inputs["text_mask"], train_semantics=True)
    windows = [w[torch.isfinite(w).all(1)] for w in inputs["windows"]]
    windows = [widen_windows(w, n, f) for w, n, f in zip(windows, vmask.sum(1), inputs["fps"])]
    got = {"h": (out.h, vmask), "query": (out.query, None), "saliency_cos": (out.saliency, vmask),
           "layer_cls": (torch.stack(out.layer_cls), vmask[None].expand(len(out.layer_cls), -1, -1)),
           "layer_query": (torch.stack(out.layer_queries), None)}
    points, labels, targets = [], [], []
    for level in out.levels:
        j, s = level["index"], level["stride"]
        got[f"cls.l{j}"] = (level["cls"], expected[f"mask.l{j}"].bool())
        got[f"reg.l{j}"] = (level["reg"], expected[f"mask.l{j}"].bool())
        got[f"mask.l{j}"] = (level["mask"], None)
        lo, hi = regression_range(cfg.strides, j)
        n = level["mask"].shape[1]
        points.append(torch.stack([torch.arange(n) * float(s), torch.full((n,), lo), torch.full((n,), hi),
                                   torch.full((n,), float(s))], 1))
        lab, tgt = assign_targets(level, windows, inputs["fps"], cfg.strides)
        labels.append(lab)
        targets.append(tgt)
    got["points"] = (torch.cat(points), None)
    got["cls_target"] = (torch.cat(labels, 1), None)
    cls_target = expected["cls_target"] > 0
    got["reg_target"] = (torch.cat(targets, 1), cls_target)
    losses = head_losses(out, [w[torch.isfinite(w).all(1)] for w in inputs["windows"]], inputs["fps"], inputs["saliency"], cfg,
                         pos_clip=inputs["pos_clip"])
    for k, v in losses.items():
        got[f"loss.{k}"] = (v, None)
    report = {}
    for name, ref in expected.items():
        if name not in got:
            report[name] = dict(max_abs_diff=None, ok=False, error="not produced")
            continue
        ours, where = got[name]
        exact = name.startswith(EXACT)
        if where is None:
            report[name] = _diff(ours, ref, exact)
        else:
            report[name] = _diff(ours[where], ref[where], exact) if ours.shape == ref.shape else _diff(ours, ref)
    return dict(tensors=report)


def check_case(case_dir: str | Path, overrides: dict | None = None, batched: bool = True) -> dict:
    """The comparison of one case (see the module docstring); ``overrides``: HeadConfig fields;
    ``batched``: also run an eval case's samples as one padded batch."""
    case = read_case(case_dir)
    kind = case["meta"]["kind"]
    result = check_eval_case(case, overrides, batched) if kind == "eval" else check_loss_case(case, overrides)
    entries = [e for section in ("tensors", "batched") for e in result.get(section, {}).values()]
    diffs = [e["max_abs_diff"] for e in entries if e["max_abs_diff"] is not None]
    return dict(case=case["meta"]["case"], kind=kind, preset=case["meta"]["preset"], tolerance=TOLERANCE,
                overrides=dict(overrides or {}),
                ok=all(e["ok"] for e in entries), max_abs_diff=max(diffs, default=None),
                failing=sorted(n for s in ("tensors", "batched") for n, e in result.get(s, {}).items() if not e["ok"]),
                **result)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("case_dirs", nargs="+", metavar="CASE_DIR")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a HeadConfig field (VALUE as JSON, e.g. protocol='\"paper\"' or relu_h=false)")
    args = parser.parse_args(argv)
    overrides = {}
    for item in args.set:
        field, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set expects FIELD=VALUE, got {item!r}")
        try:
            overrides[field] = json.loads(value)
        except json.JSONDecodeError:
            overrides[field] = value
    try:
        results = [check_case(d, overrides) for d in args.case_dirs]
    except (CaseError, TypeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(results[0] if len(results) == 1 else results, indent=1))
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    import sys as _sys

    from r2bench.core.errors import guarded
    _sys.exit(guarded(main))
