"""What figures drawn from trained models need: the run's model with its checkpoint, its
dataset (annotations, videos), and batches of chosen queries.

A record names its backbone weights by ``<file>#<digest>`` and its dataset by name and
version, not by path; both are found here and checked against the record. Weights are looked
for among the paths given (``--weights``), the record's ``weights_path`` (when a record has
one) and the project's tiny CLIP; a dataset is rebuilt by name (the built-in benchmark is
regenerated from its cache; real datasets need ``--video-dir``). A mismatch in digest or
version skips the figure with the reason, never silently draws another model.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors

from r2bench.core.errors import InputError
from r2bench.datasets.registry import BoundDataset
from r2bench.datasets.vtg import VTGDataset, collate
from r2bench.datasets.video import read_frames
from r2bench.methods.backbone import RANDOM_INIT, Backbone, BackboneError, weights_digest
from r2bench.methods.model import TransferModel
from r2bench.methods.registry import build_model, get_method
from r2bench.reports import records as rec
from r2bench.reports.figures.sources import FigureSkipped, Sources, check_run, checkpoint_of


def weights_path(record: dict, sources: Sources) -> str | None:
    """The local file whose ``name#digest`` is the record's ``weights`` (None for random init)."""
    label = record.get("weights")
    if label in (None, RANDOM_INIT):
        return None
    candidates = [*sources.weights, record.get("weights_path")]
    if record.get("backbone") == "R2Bench-Tiny":
        from r2bench.datasets.synthetic.tiny_clip import checkpoint_path
        candidates.append(str(checkpoint_path()))
    for path in filter(None, candidates):
        p = Path(path)
        if p.is_file() and f"{p.name}#{weights_digest(p)}" == label:
            return str(p)
    raise FigureSkipped(f"backbone weights {label} not found (pass their file with --weights)")


def dataset_spec(record: dict, sources: Sources) -> BoundDataset:
    """The record's dataset, rebuilt by name at the run's own size and checked against its
    version. A built-in benchmark is never generated here: if this machine's cache does not
    hold the run's, the figure is skipped with the command that makes it."""
    name = record.get("dataset")
    check_run(record, sources, checkpoint=False)
    size = run_size(record)
    key = (name, size)
    if key not in sources.specs and name in sources.specs and size is None:
        key = name                                   # a spec a caller (a test) filled by name
    if key not in sources.specs:
        from r2bench.datasets.registry import get_dataset
        spec = get_dataset(name)
        if size is not None and spec.sizes:
            spec = spec.with_size(size)
        try:
            if spec.materialize is not None:      # the built-in benchmark: found in the cache, never made here
                sources.specs[key] = spec.bind(progress=False, generate=False)
            else:
                sources.specs[key] = spec.bind(sources.annotations, sources.video_dir)
        except InputError as e:
            raise FigureSkipped(e.message) from None
    spec = sources.specs[key]
    if record.get("dataset_version") and spec.version != record["dataset_version"]:
        raise FigureSkipped(f"dataset {name} here is version {spec.version}, the run used "
                            f"{record['dataset_version']} (regenerate or point --annotations/--video-dir at it)")
    return spec


def run_size(record: dict) -> str | None:
    """The built-in benchmark's size a run used, from its ``benchmark_version`` (``…-small``)."""
    version = record.get("benchmark_version") or ""
    from r2bench.datasets.synthetic.presets import SIZES
    return next((size for size in SIZES if version.endswith(f"-{size}")), None)


def eval_split(record: dict, spec: BoundDataset) -> str:
    """The split the run was evaluated on (its predictions file is ``<split>_preds.jsonl``)."""
    preds = rec.resolve(record, record.get("predictions"))
    if preds is not None and preds.name.endswith("_preds.jsonl"):
        return preds.name[: -len("_preds.jsonl")]
    return spec.eval_split


def load_model(record: dict, sources: Sources) -> TransferModel:
    """The run's model on the CPU in eval mode: backbone + method config from the record, the
    learnable weights from ``runs/<run_id>/checkpoint.safetensors``."""
    check_run(record, sources, checkpoint=True)
    path = checkpoint_of(record)
    try:
        backbone = Backbone(record["backbone"], weights_path(record, sources))
    except BackboneError as e:
        raise FigureSkipped(str(e)) from None
    config = dict(record.get("config") or {})
    unknown = sorted(set(config) - _config_fields(record["method"]))
    if unknown:
        raise FigureSkipped(f"run {record['run_id']}: config fields {unknown} are unknown to {record['method']} in "
                            f"this code (the run was made by {record.get('code_version')})")
    model = build_model(record["method"], backbone, config)
    try:
        tensors = load_safetensors(path.read_bytes())
        model.load_learnable_state_dict(tensors)
    except (OSError, SafetensorError, KeyError, ValueError) as e:
        raise FigureSkipped(f"{path}: checkpoint does not load into {record['method']} ({e})") from None
    return model.eval()


def _config_fields(method: str) -> set[str]:
    return {f.name for f in dataclasses.fields(get_method(method).config_cls)}


def samples_by_qid(record: dict, sources: Sources) -> dict[str, object]:
    """The run's evaluation samples by qid (as text)."""
    spec = dataset_spec(record, sources)
    return {str(s.qid): s for s in spec.samples(eval_split(record, spec))}


def display_frames(record: dict, sources: Sources, vid: str, size: int = 224):
    """uint8 frames (T, size, size, 3) of a video at the dataset's fps, for drawing."""
    spec = dataset_spec(record, sources)
    try:
        return read_frames(spec.video_path(vid), spec.fps, size)
    except InputError as e:
        raise FigureSkipped(str(e)) from None


def batch(model: TransferModel, record: dict, sources: Sources, samples: list) -> dict:
    """A collated batch of ``samples`` with preprocessed frames (the backbone runs on them)."""
    spec = dataset_spec(record, sources)
    bb = model.backbone
    frames = lambda vid: bb.preprocess(read_frames(spec.video_path(vid), spec.fps, bb.image_size))
    data = VTGDataset(samples, frames, bb.tokenize, spec.fps, "frames")
    return collate([data[i] for i in range(len(data))], spec.fps)


def text_mask(ids: torch.Tensor) -> torch.Tensor:
    """Real query tokens: up to and including the end-of-text token (CLIP's highest id)."""
    return torch.arange(ids.shape[1])[None] <= ids.argmax(dim=-1)[:, None]


def step_layers(config: dict, depth: int) -> list[str]:
    """The backbone layer (1-based) each refinement step reads, in step order."""
    k = int(config.get("k", 1))
    mode = config.get("layer_mode", "recurrent")
    if mode == "single":
        return [str(depth - k + 1)]
    if mode == "mean":
        return [f"mean {depth - k + 1}–{depth}"]
    layers = [depth - i for i in range(k)]          # reversed: last layer first
    return [str(n) for n in (layers if config.get("reverse", True) else layers[::-1])]
