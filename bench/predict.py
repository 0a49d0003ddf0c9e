"""Inference on one video: the :class:`Predictor` API and ``python -m r2bench.bench.predict``.

The video is decoded and run through the (frozen or tuned) CLIP image tower once
(:meth:`Predictor.encode_video`); every query is then answered from those tapped features
(:meth:`Predictor.predict`), so that many queries cost one video encoding::

    from r2bench.bench.predict import Predictor
    p = Predictor.from_run("results/table1/runs/<run_id>")        # checkpoint + model.json
    p.encode_video("video.mp4")
    for line in p.predict(["a man plays guitar", "a dog runs"]):
        print(line["pred_relevant_windows"][:5], line["pred_saliency_scores"])

Command line (one JSON line per query, in the submission format, windows cut to ``--top``)::

    python -m r2bench.bench.predict RUN_DIR video.mp4 -q "a man plays guitar" -q "a dog runs" [--top 5]
    python -m r2bench.bench.predict --checkpoint ckpt.safetensors --method r2_tuning --weights ViT-B-32.pt \\
        --fps 0.5 video.mp4 -q "..."

The answers are the suite's, to the last digit: same frames (decord at the model's frame rate,
as ``datasets.vtg.FrameSource``), every frame through the image tower in the same chunks and the
same fp16 rounding of the features where the suite caches them (a cacheable model), each query
computed alone as the suite's evaluation computes each sample (``bench.train.predict``), the
same head and decoding (``TransferModel.predict``).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from r2bench.bench.train import autocast_for, load_checkpoint
from r2bench.core.errors import InputError
from r2bench.core.io import atomic_write
from r2bench.datasets.prepare import encode_frames
from r2bench.datasets.registry import parse_overrides
from r2bench.datasets.video import read_frames, video_duration
from r2bench.datasets.vtg import num_clips
from r2bench.methods.backbone import Backbone, BackboneError, trim_text_ids
from r2bench.methods.registry import build_model

MODEL_FILE = "model.json"          # beside a run's checkpoint.safetensors: how to rebuild the model
CHECKPOINT_FILE = "checkpoint.safetensors"
DEFAULT_TOP = 5


def write_model_card(run_dir: str | Path, *, method: str, config: dict, backbone: str, weights: str | None,
                     fps: float | None, amp: bool, dataset: str) -> Path:
    """Write ``run_dir/model.json``: what :meth:`Predictor.from_run` needs to rebuild the
    model of the run's checkpoint (``fps`` None: the dataset's frame rate is per video)."""
    card = dict(method=method, config=config, backbone=backbone,
                weights=None if weights is None else str(Path(weights).resolve()), fps=fps, amp=amp, dataset=dataset)
    return atomic_write(Path(run_dir) / MODEL_FILE, json.dumps(card, indent=1, sort_keys=True) + "\n")


@dataclass
class EncodedVideo:
    """One video, encoded once: ``tokens`` ``{point: (1, T, L, N, D)}`` (the model's tapped
    video tokens), its frame rate and duration (seconds)."""

    path: str
    tokens: dict[str, torch.Tensor]
    fps: float
    duration: float

    @property
    def num_frames(self) -> int:
        return next(iter(self.tokens.values())).shape[1]


class Predictor:
    """A trained model answering queries about one video at a time (encode once, ask many).

    ``config``: the method's config fields (a run's ``model.json`` holds them); ``fps``: the
    frame rate the model was trained at (None: give it to :meth:`encode_video`)."""

    def __init__(self, checkpoint: str | Path, *, method: str = "r2_tuning", config: dict | None = None,
                 backbone: str = "ViT-B-32", weights: str | None = None, fps: float | None = None,
                 device: str | torch.device = "cpu", amp: bool = False):
        self.device = torch.device(device)
        self.fps, self.amp, self.method = fps, amp, method
        self.backbone = Backbone(backbone, weights, device=self.device)
        self.model = build_model(method, self.backbone, _config_fields(config or {})).to(self.device)
        load_checkpoint(self.model, checkpoint)
        self.model.eval()
        self.video: EncodedVideo | None = None

    @classmethod
    def from_run(cls, run_dir: str | Path, *, weights: str | None = None, device: str | torch.device = "cpu"
                 ) -> Predictor:
        """The model of a finished run (``run_dir`` holds ``checkpoint.safetensors`` and
        ``model.json``); ``weights`` replaces the CLIP checkpoint path the run used."""
        run_dir = Path(run_dir)
        card_path = run_dir / MODEL_FILE
        try:
            card = json.loads(card_path.read_text())
        except OSError as e:
            raise InputError(card_path, None, None, f"cannot read the run's model card ({e.strerror or e}); "
                                                    f"is {run_dir} a run folder (runs/<run_id>)?") from None
        except json.JSONDecodeError as e:
            raise InputError(card_path, e.lineno, None, f"not valid JSON ({e.msg})") from None
        missing = [k for k in ("method", "config", "backbone", "weights", "fps") if k not in card]
        if missing:
            raise InputError(card_path, None, missing[0], "missing from the model card")
        return cls(run_dir / CHECKPOINT_FILE, method=card["method"], config=card["config"], backbone=card["backbone"],
                   weights=weights or card["weights"], fps=card["fps"], device=device, amp=bool(card.get("amp")))

    # ---- the video, once ----------------------------------------------------------------
    def encode_video(self, path: str | Path, *, fps: float | None = None, duration: float | None = None
                     ) -> EncodedVideo:
        """Decode ``path`` at the model's frame rate (or ``fps``) and run the image tower once;
        the result is kept for :meth:`predict` and returned. ``duration`` (seconds) defaults to
        the file's; windows are clamped to it."""
        fps = fps or self.fps
        if not fps:
            raise InputError(path, None, "fps", "this model's dataset has no fixed frame rate (a per-video one); "
                                                "give fps=… (command line: --fps)")
        if not Path(path).is_file():
            raise InputError(path, None, "video", "no such video file")
        duration = float(duration if duration is not None else video_duration(path))
        frames = self.backbone.preprocess(read_frames(path, fps, self.backbone.image_size)).cpu()
        n = min(len(frames), num_clips(duration, fps))
        if self.model.cacheable:
            # as the suite's feature cache: every decoded frame encoded (the same chunks of frames
            # through the image tower), stored in fp16, then cut to the clips the duration holds
            tokens = {p: v.to(torch.float16)[None, :n] for p, v in
                      encode_frames(self.backbone, frames, self.model.video_taps, self.device).items()}
        else:
            frames = frames[:n]
            with torch.no_grad(), autocast_for(self.device, self.amp)():
                tokens = {p: v.cpu() for p, v in self.model.video_layer_tokens(
                    frames[None].to(self.device), torch.ones(1, len(frames), dtype=torch.bool, device=self.device)
                ).items()}
        self.video = EncodedVideo(str(path), tokens, float(fps), duration)
        return self.video

    # ---- any number of queries ----------------------------------------------------------
    def predict(self, queries: str | list[str], video: EncodedVideo | None = None) -> list[dict]:
        """One line per query (``query``, ``vid``, ``pred_relevant_windows`` ranked
        [start, end, score] in seconds — absent for a highlight-detection-only head — and
        ``pred_saliency_scores`` per frame), answered from the encoded ``video`` (default:
        the last :meth:`encode_video`). Each query is answered by itself, a batch of one, as
        the suite's evaluation computes every sample (``bench.train.predict``): in a batch, a
        query's floats would depend on the other queries' number and lengths."""
        video = video or self.video
        if video is None:
            raise ValueError("no video encoded yet: call encode_video(path) first")
        queries = [queries] if isinstance(queries, str) else list(queries)
        if not queries or any(not isinstance(q, str) or not q.strip() for q in queries):
            raise InputError(None, None, "query", f"expected one or more non-empty query strings, got {queries!r}")
        lines = []
        taps = {p: v.to(self.device) for p, v in video.tokens.items()}
        for qid, query in enumerate(queries):
            batch = dict(video_taps=taps, video_mask=torch.ones(1, video.num_frames, dtype=torch.bool, device=self.device),
                         text_ids=trim_text_ids(self.backbone.tokenize([query])).to(self.device),
                         fps=torch.full((1,), video.fps), duration=torch.full((1,), video.duration),
                         qid=[qid], vid=[Path(video.path).stem], query=[query])
            with torch.no_grad(), autocast_for(self.device, self.amp)():
                lines += self.model.predict(self.model(batch), batch)
        for line in lines:
            del line["qid"]
        return lines


def _config_fields(config: dict) -> dict:
    """A config read back from JSON: lists become tuples (dataclass fields such as ``strides``)."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}


# --------------------------------------------------------------------------- command line

def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="r2bench predict", description=__doc__.splitlines()[0])
    p.add_argument("paths", nargs="+", metavar="[RUN_DIR] VIDEO",
                   help="a run folder (runs/<run_id>: checkpoint.safetensors + model.json) and a video file; "
                        "with --checkpoint, only the video")
    p.add_argument("-q", "--query", action="append", required=True, help="a query (repeatable)")
    p.add_argument("--top", type=int, default=DEFAULT_TOP, help=f"windows printed per query (default {DEFAULT_TOP})")
    p.add_argument("--checkpoint", help="a checkpoint without a run folder (then give --method, --weights, --fps)")
    p.add_argument("--method", default="r2_tuning")
    p.add_argument("--backbone", default="ViT-B-32")
    p.add_argument("--weights", help="CLIP checkpoint (default: the run's)")
    p.add_argument("--fps", type=float, help="frame rate (default: the run's dataset's)")
    p.add_argument("--set", nargs="+", default=[], metavar="head.KEY=VALUE",
                   help="head config fields the model was trained with (with --checkpoint)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if args.checkpoint:
            if len(args.paths) != 1:
                raise InputError(None, None, "paths", "with --checkpoint give only the video")
            predictor = Predictor(args.checkpoint, method=args.method, config=parse_overrides(args.set, train_keys=())["head"],
                                  backbone=args.backbone, weights=args.weights, fps=args.fps, device=args.device)
        else:
            if len(args.paths) != 2:
                raise InputError(None, None, "paths", "give RUN_DIR VIDEO (or --checkpoint CKPT VIDEO)")
            predictor = Predictor.from_run(args.paths[0], weights=args.weights, device=args.device)
        predictor.encode_video(args.paths[-1], fps=args.fps)
        for line in predictor.predict(args.query):
            if "pred_relevant_windows" in line:
                line["pred_relevant_windows"] = line["pred_relevant_windows"][:max(0, args.top)]
            print(json.dumps(line))
    except (InputError, BackboneError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    import sys as _sys

    from r2bench.core.errors import guarded
    _sys.exit(guarded(main))
