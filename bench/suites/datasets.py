"""The dataset tables as suites: paper Tables 1–4, R²-Tuning on each benchmark.

* ``table1``: QVHighlights (MR + HD), scored on val; the test split (labels withheld) is
  predicted too and written as ``hl_test_submission.jsonl`` for the official server;
* ``table2``: moment retrieval on Ego4D-NLQ, Charades-STA and TACoS;
* ``table3``: YouTube Highlights, one model per domain;
* ``table4``: TVSum, one model per domain.

A dataset suite runs on the real datasets it is given and on a **synthetic stand-in of the
same task** when it is given none (``DatasetSuite.stand_in``, labelled as such in the table):

    python run_all.py --suite table2                                   # stand-in: MR only
    python run_all.py --suite table2 --data charades_sta=VIDEOS --data tacos=VIDEOS2 --weights ViT-B-32.pt
    python run_all.py --suite table2 --data-file data.toml --weights ViT-B-32.pt
    python run_all.py --suite table1 --dataset qvhighlights --video-dir VIDEOS --weights ViT-B-32.pt

``--data NAME=VIDEO_DIR`` (repeatable) names a dataset and its video folder (annotations: the
default folder, or ``--annotations`` when one dataset is given); ``--data-file`` reads a TOML
file with one table per dataset (``video_dir``, optional ``annotations``). ``--dataset NAME
--video-dir DIR`` is the same as ``--data NAME=DIR``. Every run of one suite goes into one
ledger (``OUT/<suite>``), so datasets can be run one command at a time; the table shows the
datasets not run yet with the command that fills them. A dataset whose spec says
``per_domain`` (YouTube Highlights, TVSum and their stand-ins) is one run per domain.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from r2bench.bench.run import RunSpec
from r2bench.bench.suites.base import Suite
from r2bench.core.errors import InputError
from r2bench.datasets.registry import BoundDataset, get_dataset, parse_overrides
from r2bench.methods.backbone import check_backbone
from r2bench.reports.tables import datasets as dt

R2 = "r2_tuning"
R2_ROW = "R²-Tuning"
R2_PAPER = {"method": "R2-Tuning"}
STAND_IN_BACKBONE = "R2Bench-Tiny"
REAL_BACKBONE = "ViT-B-32"


@dataclass(frozen=True)
class DatasetSuite(Suite):
    """A suite reporting ``targets`` (real datasets); ``stand_in`` (a registered synthetic
    dataset of the same task) runs when none of them is given."""

    targets: tuple[str, ...] = ()
    stand_in: str | None = None

    def __post_init__(self):
        super().__post_init__()
        for name in (*self.targets, *([self.stand_in] if self.stand_in else [])):
            get_dataset(name)   # a typo fails at import, naming the dataset
        if self.stand_in and not set(get_dataset(self.stand_in).stand_in_for) & set(self.targets):
            raise ValueError(f"suite {self.name}: {self.stand_in} is not a stand-in for {self.targets}")
        if (self.table.targets, self.table.stand_in) != (self.targets, self.stand_in):
            raise ValueError(f"suite {self.name}: its table reports {self.table.targets} / {self.table.stand_in}, "
                             f"the suite {self.targets} / {self.stand_in}")


class DataPaths(NamedTuple):
    video_dir: Path
    annotations: Path | None = None


class Binding(NamedTuple):
    """One dataset (or one domain of it) a suite runs on, with its backbone and weights."""

    dataset: BoundDataset
    backbone: str
    weights: str | None


# --------------------------------------------------------------------------- what the user gave

def parse_data(items: list[str] | None, data_file: str | Path | None = None) -> dict[str, DataPaths]:
    """``["charades_sta=VIDEOS", ...]`` and a TOML file (``[charades_sta]`` tables with
    ``video_dir`` and optional ``annotations``) → ``{name: DataPaths}``. Unknown datasets, a
    missing ``=`` and a dataset named twice are ``InputError``s."""
    out: dict[str, DataPaths] = {}

    def add(name: str, paths: DataPaths, where: str) -> None:
        try:
            get_dataset(name)
        except KeyError as e:
            raise InputError(where, None, "data", str(e).strip("'\"")) from None
        if name in out:
            raise InputError(where, None, "data", f"dataset '{name}' given twice")
        out[name] = paths

    if data_file is not None:
        path = Path(data_file)
        try:
            table = tomllib.loads(path.read_text())
        except OSError as e:
            raise InputError(path, None, None, f"cannot read the data file: {e.strerror or e}") from None
        except tomllib.TOMLDecodeError as e:
            raise InputError(path, None, None, f"not valid TOML ({e})") from None
        for name, entry in table.items():
            if not isinstance(entry, dict) or not isinstance(entry.get("video_dir"), str):
                raise InputError(path, None, f"{name}.video_dir",
                                 f"expected a table [{name}] with video_dir = \"FOLDER\" (and optionally "
                                 f"annotations = \"FOLDER\"), found {entry!r}")
            unknown = set(entry) - {"video_dir", "annotations"}
            if unknown:
                raise InputError(path, None, f"{name}.{sorted(unknown)[0]}", "unknown key (known: video_dir, annotations)")
            ann = entry.get("annotations")
            add(name, DataPaths(Path(entry["video_dir"]), Path(ann) if ann else None), str(path))
    for item in items or []:
        name, sep, folder = item.partition("=")
        if not sep or not name.strip() or not folder.strip():
            raise InputError("--data", None, "data", f"expected NAME=VIDEO_DIR (e.g. charades_sta=/data/videos), "
                                                     f"found {item!r}")
        add(name.strip(), DataPaths(Path(folder.strip())), "--data")
    return out


def given_data(suite: DatasetSuite, args) -> dict[str, DataPaths]:
    """The real datasets of ``suite`` that the command names (``--data``, ``--data-file``,
    ``--dataset``/``--video-dir``); a dataset the suite does not report is an error."""
    given = parse_data(getattr(args, "data", None), getattr(args, "data_file", None))
    dataset = getattr(args, "dataset", None)
    if dataset and dataset not in suite.targets and getattr(args, "suite", None) == "all":
        dataset = None              # --suite all --dataset X: X feeds the suites that report it
    if dataset and dataset not in ("synthetic", suite.stand_in):
        if not getattr(args, "video_dir", None):
            raise InputError(None, None, "video_dir", f"--dataset {dataset} needs --video-dir (a folder of videos)")
        if dataset in given:
            raise InputError("--dataset", None, "data", f"dataset '{dataset}' given twice (--dataset and --data)")
        given[dataset] = DataPaths(Path(args.video_dir))
    wrong = [name for name in given if name not in suite.targets]
    if wrong:
        raise InputError("--data", None, "data", f"suite {suite.name} reports {', '.join(suite.targets)}; "
                                                 f"{', '.join(wrong)} is not one of them")
    annotations = getattr(args, "annotations", None)
    if annotations:
        if len(given) != 1:
            raise InputError("--annotations", None, "annotations",
                             "--annotations names one dataset's folder; with several datasets give each its "
                             "own in --data-file")
        (name, paths), = given.items()
        given[name] = paths._replace(annotations=paths.annotations or Path(annotations))
    return given


# --------------------------------------------------------------------------- bindings

def expand_domains(dataset: BoundDataset) -> list[BoundDataset]:
    """One dataset per domain when its spec trains one model per domain, else the dataset."""
    return [dataset.for_domain(d) for d in dataset.spec.domains] if dataset.spec.per_domain else [dataset]


def stand_in_binding(suite: DatasetSuite, args) -> tuple[BoundDataset, str, str | None]:
    """The suite's stand-in, generated on first use, with the project's tiny CLIP (or the
    ``--backbone``/``--weights`` given)."""
    spec = get_dataset(suite.stand_in)
    size = getattr(args, "size", None)
    if size:                            # first: a size brings its own preset, which --set then overrides
        try:
            spec = spec.with_size(size)
        except ValueError as e:
            raise InputError(None, None, "size", str(e)) from None
    spec = spec.with_overrides(parse_overrides(getattr(args, "set", None) or []))
    backbone = getattr(args, "backbone", None) or STAND_IN_BACKBONE
    weights = getattr(args, "weights", None)
    check_backbone(backbone, weights)
    data = spec.bind(progress=not getattr(args, "quiet", False), follow_symlinks=getattr(args, "follow_symlinks", False))
    if weights or getattr(args, "random_init", False) or backbone != STAND_IN_BACKBONE:
        return data, backbone, weights
    from r2bench.datasets.synthetic.tiny_clip import ensure_tiny_clip
    return data, backbone, str(ensure_tiny_clip())


def bindings(suite: DatasetSuite, args) -> list[Binding]:
    """Every (dataset or domain, backbone, weights) the command asks ``suite`` to run on: the
    real datasets given, else the stand-in. Bad paths and names fail here, before anything runs."""
    given = given_data(suite, args)
    if getattr(args, "test_annotations", None) and "qvhighlights" not in given:
        raise InputError(args.test_annotations, None, "test_annotations",
                         "--test-annotations is QVHighlights' released test ground truth: run table1 on "
                         "--data qvhighlights=VIDEO_DIR (or --dataset qvhighlights --video-dir DIR)")
    overrides = parse_overrides(getattr(args, "set", None) or [])
    if not given:
        data, backbone, weights = stand_in_binding(suite, args)
        return [Binding(d, backbone, weights) for d in expand_domains(data)]
    backbone = getattr(args, "backbone", None) or REAL_BACKBONE
    weights = getattr(args, "weights", None)
    check_backbone(backbone, weights)
    for name, paths in given.items():       # the folder the user typed, before any annotation lookup
        if paths.video_dir is not None and not Path(paths.video_dir).is_dir():
            raise InputError(str(paths.video_dir), None, "video_dir", f"--data {name}=DIR: no such video folder")
    out = []
    for name in suite.targets:              # the table's order
        if name in given:
            paths = given[name]
            data = get_dataset(name).with_overrides(overrides).bind(
                paths.annotations, paths.video_dir, follow_symlinks=getattr(args, "follow_symlinks", False)).check()
            test = getattr(args, "test_annotations", None)
            if test and name == "qvhighlights":    # the released test ground truth: scored locally
                data = with_test_ground_truth(data, Path(test))
            out += [Binding(d, backbone, weights) for d in expand_domains(data)]
    return out


def with_test_ground_truth(data: BoundDataset, path: Path) -> BoundDataset:
    """``data`` whose test split is read from ``path``, which must label every query (the file the
    QVHighlights authors released after the evaluation server closed): the run then scores its
    test predictions with the official metrics, and still writes the submission file."""
    if not path.is_file():
        raise InputError(path, None, "test_annotations", "no such file")
    samples = data.spec.read(path, require_labels=False)
    unlabelled = [s for s in samples if not s.windows and not s.saliency]
    if unlabelled:
        raise InputError(unlabelled[0].source, None, "relevant_windows",
                         f"{len(unlabelled)} of {len(samples)} queries carry no ground truth: --test-annotations needs "
                         f"the labelled test file, not the submission template")
    files = {**data.files, data.test_split or "test": path}
    return BoundDataset(data.spec, files, data.video_dir, data.domain, data.follow_symlinks)


# --------------------------------------------------------------------------- the suites

def _r2(**kw) -> tuple[RunSpec, ...]:
    return (RunSpec(R2, row=R2_ROW, paper=R2_PAPER, **kw),)


TABLE1 = DatasetSuite(
    name="table1",
    description="Table 1: QVHighlights MR + HD (val; test predictions written as hl_test_submission.jsonl and "
                "submission.zip; scored locally with --test-annotations)",
    runs=_r2(predict_splits=("test",)),
    targets=("qvhighlights",), stand_in="synthetic", reference=R2_ROW,
    table=dt.DatasetTable(
        title="Table 1 — QVHighlights (ours: val, and test when its ground truth is given; paper: test): ours vs paper",
        columns=dt.qvhighlights_columns("QVHL", True) + dt.qvhighlights_columns("QVHL test", True, split="test"),
        roles={"QVHL": ("qvhighlights",), "QVHL test": ("qvhighlights",)},
        reference_why=dt.REFERENCE_WHY, paper_table="table1_qvhighlights_test",
        paper_setting=("Paper: QVHighlights TEST split (R²-Tuning Table 1); ours: QVHighlights VAL, and the test "
                       "split in the 'test' columns when its released ground truth is given (--test-annotations). "
                       "Val and test numbers are not the same measurement."),
        info=(("Post pre-training", dt.paper_info("post_pretrain")),),
        notes=(dt.VAL_ONLY_NOTE, "QVHL test columns: ours only when the released test ground truth is given "
                                 "(--test-annotations FILE); the CodaLab server that scored the test split has "
                                 "closed (jayleicn/moment_detr issues #84, #85, #89)."),
        targets=("qvhighlights",), stand_in="synthetic", stand_in_columns=dt.qvhighlights_columns(dt.STAND_IN_GROUP, False),
        stand_in_what="MR + HD, the built-in benchmark", submissions=True),
)

TABLE2_GROUPS = {"ego4d_nlq": ("Ego4D-NLQ", "Ego4D"), "charades_sta": ("Charades-STA", "Charades"),
                 "tacos": ("TACoS", "TACoS")}
TABLE2 = DatasetSuite(
    name="table2",
    description="Table 2: moment retrieval on Ego4D-NLQ, Charades-STA and TACoS",
    runs=_r2(),
    targets=tuple(TABLE2_GROUPS), stand_in="synthetic_mr", reference=R2_ROW,
    table=dt.DatasetTable(
        title="Table 2 — moment retrieval on Ego4D-NLQ, Charades-STA, TACoS: ours vs paper",
        columns=sum((dt.moment_retrieval_columns(group, prefix) for group, prefix in TABLE2_GROUPS.values()), ()),
        roles={group: (name,) for name, (group, _) in TABLE2_GROUPS.items()},
        reference_why=dt.REFERENCE_WHY, paper_table="table2_moment_retrieval",
        paper_setting="Paper: Ego4D-NLQ val, Charades-STA test, TACoS test (R²-Tuning Table 2).",
        info=(("Backbone", dt.paper_info("backbone", "CLIP")),),
        targets=tuple(TABLE2_GROUPS), stand_in="synthetic_mr",
        stand_in_columns=dt.moment_retrieval_columns(dt.STAND_IN_GROUP, None),
        stand_in_what="moment retrieval only: the built-in benchmark without saliency labels"),
)

TABLE3 = DatasetSuite(
    name="table3",
    description="Table 3: YouTube Highlights mAP, one model per domain",
    runs=_r2(),
    targets=("youtube_highlights",), stand_in="synthetic_hd_binary", reference=R2_ROW,
    table=dt.DatasetTable(
        title="Table 3 — YouTube Highlights mAP per domain: ours vs paper",
        columns=dt.domain_columns("YouTube", "mAP", "youtube_highlights", dt.YOUTUBE_PAPER),
        roles={"YouTube": ("youtube_highlights",)}, reference_why=dt.REFERENCE_WHY,
        paper_table="table3_youtube_highlights_mAP",
        paper_setting="Paper: YouTube Highlights val, mAP per domain, one model per domain (R²-Tuning Table 3).",
        targets=("youtube_highlights",), stand_in="synthetic_hd_binary",
        stand_in_columns=dt.domain_columns(dt.STAND_IN_GROUP, "mAP", "synthetic_hd_binary", None),
        stand_in_what="highlight detection per domain, binary labels, the domain name as the only query text"),
)

TABLE4 = DatasetSuite(
    name="table4",
    description="Table 4: TVSum Top-5 mAP, one model per domain",
    runs=_r2(),
    targets=("tvsum",), stand_in="synthetic_hd_graded", reference=R2_ROW,
    table=dt.DatasetTable(
        title="Table 4 — TVSum Top-5 mAP per domain: ours vs paper",
        columns=dt.domain_columns("TVSum", "Top5-mAP", "tvsum", dt.domains_of("tvsum")),
        roles={"TVSum": ("tvsum",)}, reference_why=dt.REFERENCE_WHY, paper_table="table4_tvsum_top5_mAP",
        paper_setting="Paper: TVSum val, Top-5 mAP per domain, one model per domain (R²-Tuning Table 4).",
        targets=("tvsum",), stand_in="synthetic_hd_graded",
        stand_in_columns=dt.domain_columns(dt.STAND_IN_GROUP, "Top5-mAP", "synthetic_hd_graded", None),
        stand_in_what="highlight detection per domain, 20 annotators' 1–5 scores, the domain name as the only "
                      "query text"),
)

DATASET_SUITES = (TABLE1, TABLE2, TABLE3, TABLE4)
__all__ = ["DATASET_SUITES", "DataPaths", "DatasetSuite", "Binding", "bindings", "parse_data"]
