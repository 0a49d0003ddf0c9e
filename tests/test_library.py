"""R²-Bench as a library (issue 16): one namespace and a good neighbour of Hugging Face's
``datasets``, one CLI, a method of one's own as a suite row, experiment files."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from r2bench import cli
from r2bench.core.io import REPO_ROOT

REPO = Path(__file__).resolve().parent.parent


def run(args: list[str], cwd: Path, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


# --------------------------------------------------------------------------- packaging

def test_the_wheel_lists_every_package_folder_and_its_data():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    declared = set(config["packages"])
    mapping = config["package-dir"]
    found = {"r2bench", "r2bench.core"}
    for top in ("methods", "bench", "datasets", "reports"):
        for folder in (REPO / top).rglob("*"):
            if folder.is_dir() and any(folder.glob("*.py")) and "__pycache__" not in folder.parts:
                found.add("r2bench." + ".".join(folder.relative_to(REPO).parts))
        found.add(f"r2bench.{top}")
        assert mapping[f"r2bench.{top}"] == top
    assert declared == found, f"pyproject packages differ: {sorted(declared ^ found)}"
    assert not (REPO / "datasets" / "__init__.py").exists()      # Hugging Face's `datasets` keeps its name


@pytest.mark.slow
def test_the_wheel_holds_r2bench_only_and_the_console_script(tmp_path):
    proc = run(["-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)],
               tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("r2bench-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if ".dist-info/" not in n} == {"r2bench"}
    assert "r2bench/methods/model_configs/R2Bench-Tiny.json" in names
    assert "r2bench/reports/paper_tables/table9_transfer_methods.csv" in names
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "r2bench = r2bench.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()


FAKE_HF = '''"""A stand-in for Hugging Face's datasets: a regular top-level package of that name."""
MARK = "hugging face"
def load_dataset(name):
    return name
'''


@pytest.mark.parametrize("order", ["hf_first", "r2bench_first"])
def test_hugging_face_datasets_and_r2bench_work_in_one_process_in_either_order(tmp_path, order):
    site = tmp_path / "site"
    (site / "datasets").mkdir(parents=True)
    (site / "datasets" / "__init__.py").write_text(FAKE_HF)
    hf = "import datasets; assert datasets.MARK == 'hugging face' and datasets.load_dataset('x') == 'x'"
    ours = "from r2bench.bench.predict import Predictor; from r2bench.datasets.registry import get_dataset; get_dataset('tacos')"
    code = "; ".join([hf, ours] if order == "hf_first" else [ours, hf]) + "; print('ok')"
    # from the repository root, the worst case: the checkout's own datasets/ folder is on the path first
    proc = run(["-c", code], REPO, env={"PYTHONPATH": os.pathsep.join([str(REPO), str(site)])})
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
    # and from any other folder
    proc = run(["-c", code], tmp_path, env={"PYTHONPATH": os.pathsep.join([str(REPO), str(site)])})
    assert proc.returncode == 0, proc.stderr


def test_nothing_imports_a_top_level_module_of_ours():
    code = ("import sys, r2bench.cli, r2bench.bench.orchestrate, r2bench.reports.report, r2bench.methods.contract; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('methods', 'bench', 'datasets', 'reports', 'run_all')))")
    proc = run(["-c", code], REPO)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr + proc.stdout


def test_the_library_never_imports_the_script():
    for path in [*REPO.glob("methods/**/*.py"), *REPO.glob("bench/**/*.py"), *REPO.glob("datasets/**/*.py"),
                 *REPO.glob("reports/**/*.py"), *REPO.glob("r2bench/**/*.py")]:
        text = path.read_text()
        assert "import run_all" not in text and "from run_all" not in text, path


# --------------------------------------------------------------------------- one command line

def test_the_cli_lists_its_commands_and_each_has_help(tmp_path):
    proc = run(["-m", "r2bench", "--help"], tmp_path, env={"PYTHONPATH": str(REPO)})
    assert proc.returncode == 0
    for command in cli.COMMANDS:
        assert command in proc.stdout
        sub = run(["-m", "r2bench", command, "--help"], tmp_path, env={"PYTHONPATH": str(REPO)})
        assert sub.returncode == 0 and f"r2bench {command}" in sub.stdout, (command, sub.stderr)
    bad = run(["-m", "r2bench", "frobnicate"], tmp_path, env={"PYTHONPATH": str(REPO)})
    assert bad.returncode == 2 and "unknown command 'frobnicate'" in bad.stderr


def test_outputs_default_to_out_in_the_working_folder():
    args = cli.parse_run_args([])
    assert args.out == Path("out") and args.suite == "table9"


PLUGIN = '''
from dataclasses import dataclass
from r2bench.methods import HeadConfig, TransferModel, register


@dataclass
class MineConfig(HeadConfig):
    k: int = 1
    mine_scale: float = 1.0


@register("mine", label="My Method", category="METL", config=MineConfig)
def build(backbone, cfg):
    """A frozen backbone under the shared head: the simplest method of one's own."""
    return TransferModel(backbone, cfg, backbone_grad=False)
'''


def test_a_plugin_method_gets_its_own_row_beside_the_papers(small_bench, tmp_path, monkeypatch):
    monkeypatch.setenv("R2BENCH_CACHE", str(small_bench["cache"]))
    plugin = tmp_path / "elsewhere" / "my_method.py"          # a file the repository does not contain
    plugin.parent.mkdir()
    plugin.write_text(PLUGIN)
    argv = small_bench["argv"](tmp_path / "out", "--plugin", str(plugin), "--methods", "frozen", "mine", epochs=1)
    assert cli.run_main(argv) == 0
    table = (tmp_path / "out" / "table9" / "table9.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| My Method"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "METL" and cells[3] == "–"             # its params ours, the paper's empty
    assert table.index("| w/o Tuning") < table.index("| My Method")
    ledger = [json.loads(x) for x in (tmp_path / "out" / "table9" / "ledger.jsonl").read_text().splitlines()]
    assert {r["method"] for r in ledger} == {"frozen", "mine"} and all(r["status"] == "ok" for r in ledger)
    proc = run(["-m", "r2bench", "check-method", str(plugin), "mine", "--no-memory"], tmp_path,
               env={"PYTHONPATH": str(REPO)}, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = run(["-m", "r2bench", "run", "--paper-scale", "--methods", "mine", "--out", str(tmp_path / "o")], tmp_path,
               env={"PYTHONPATH": str(REPO)})                                # without --plugin: no such method
    assert proc.returncode == 2 and "--methods mine: no such method" in proc.stderr and "--plugin FILE" in proc.stderr


def test_an_experiment_file_is_a_diff_over_the_defaults_and_the_command_line_wins(tmp_path):
    exp = tmp_path / "exp.toml"
    exp.write_text('suite = "table5"\nseeds = [0, 1]\nsize = "small"\nmethods = ["r2_tuning"]\n'
                   '[set]\n"train.lr" = 0.002\nhead = { dropout = 0.2 }\n')
    args = cli.parse_run_args(["--config", str(exp), "--seeds", "3", "--set", "head.dropout=0.3"])
    assert (args.suite, args.seeds, args.size, args.methods) == ("table5", [3], "small", ["r2_tuning"])
    assert args.set == ["train.lr=0.002", "head.dropout=0.2", "head.dropout=0.3"]   # the command line's last
    from r2bench.datasets.registry import parse_overrides
    assert parse_overrides(args.set) == {"train": {"lr": 0.002}, "head": {"dropout": 0.3}}
    assert args.experiment["file"] == str(exp.resolve())
    exp.write_text('suite = "table5"\nseed = [0]\n')
    with pytest.raises(SystemExit):
        cli.parse_run_args(["--config", str(exp)])


def test_the_resolved_experiment_is_stored_with_the_results(small_bench, tmp_path, monkeypatch):
    monkeypatch.setenv("R2BENCH_CACHE", str(small_bench["cache"]))
    exp = tmp_path / "exp.toml"
    exp.write_text('epochs = 1\n[set]\n"train.batch_size" = 4\n')
    assert cli.run_main([*small_bench["argv"](tmp_path / "out"), "--config", str(exp)]) == 0
    stored = json.loads((tmp_path / "out" / "table9" / "experiment.json").read_text())
    assert stored["experiment"]["values"] == {"epochs": 1} and stored["resolved"]["epochs"] == 2   # argv's --epochs 2
    assert "train.batch_size=4" in stored["resolved"]["set"]
