"""Damaged and half-written files: a ledger written by several processes at once, temp files
left by killed writers, checkpoints with flipped or missing bytes. Nothing here trains."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import r2bench.datasets.synthetic.tiny_clip as T
from r2bench import cli
from r2bench.bench import orchestrate
from r2bench.bench.ledger import Ledger
from r2bench.core.io import TEMP_TAG, _host, atomic_write, clean_orphans, temp_dir_for
from r2bench.methods.backbone import BackboneError, check_backbone
from r2bench.methods.checkpoints import verify_safetensors

REPO = Path(__file__).resolve().parents[1]

WRITER = """
import sys
from r2bench.bench.ledger import Ledger
ledger, name, n = Ledger(sys.argv[1]), sys.argv[2], int(sys.argv[3])
for i in range(n):
    ledger.append({"run_id": f"{name}-{i}", "status": "ok", "metrics": {"x": i}})
    if i % 10 == 0:
        ledger.write_results_csv()
"""


# ---- the ledger under concurrent writers -----------------------------------------------------
def test_parallel_processes_appending_to_one_ledger_lose_nothing(tmp_path):
    """Four processes append 60 records each: all 240 are there, each once (without the lock,
    read-modify-write loses some: the issue saw 156 of 200)."""
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), f"w{k}", "60"], cwd=REPO,
                              env={**os.environ, "PYTHONPATH": str(REPO)}) for k in range(4)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0, 0]
    ids = [r["run_id"] for r in Ledger(tmp_path).records()]
    assert len(ids) == 240 and set(ids) == {f"w{k}-{i}" for k in range(4) for i in range(60)}
    assert len((tmp_path / "results.csv").read_text().splitlines()) >= 2


# ---- orphaned temp files --------------------------------------------------------------------
def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_orphaned_temp_files_of_killed_writers_are_removed_and_live_ones_kept(tmp_path):
    host, dead, live = _host(), _dead_pid(), os.getpid()
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    orphan_file = sub / f".ledger.jsonl{TEMP_TAG}{host}-{dead}-abc12345"
    orphan_dir = tmp_path / f".features{TEMP_TAG}{host}-{dead}-def45678"
    in_flight = sub / f".y.csv{TEMP_TAG}{host}-{live}-live0123"
    # never provably ours: another host's writer (however old), look-alikes of every kind
    other_host = sub / f".x.csv{TEMP_TAG}otherhost-{dead}-zzz99999"
    look_alikes = [tmp_path / ".notes.ABCDEFGH.tmp", sub / ".draft.tmp-abcd1234",
                   tmp_path / ".report.r2tmp-otherhost-1-x", sub / f".short{TEMP_TAG}{host}-{dead}-abc1234",
                   sub / f".upper{TEMP_TAG}{host}-{dead}-ABCDEFGH", sub / f"noDot{TEMP_TAG}{host}-{dead}-abcdefgh",
                   sub / f".long{TEMP_TAG}{host}-{dead}-abcdefghi", sub / f".dash{TEMP_TAG}{host}-x-{dead}-abcdefgh"]
    not_ours = [sub / ".gitignore", sub / "results.csv", sub / ".hidden.tmp"]
    for p in (orphan_file, in_flight, other_host, *look_alikes, *not_ours):
        p.write_bytes(b"x" * 100)
    orphan_dir.mkdir()
    (orphan_dir / "part.safetensors").write_bytes(b"y" * 1000)
    three_days_ago = time.time() - 3 * 86400
    for p in (other_host, *look_alikes):
        os.utime(p, (three_days_ago, three_days_ago))

    removed = set(clean_orphans(tmp_path))
    assert removed == {orphan_file, orphan_dir}
    assert not orphan_dir.exists() and not orphan_file.exists()
    assert all(p.exists() for p in (in_flight, other_host, *look_alikes, *not_ours))


def test_a_refused_command_deletes_nothing_and_a_valid_one_cleans_after_validation(tmp_path, monkeypatch):
    monkeypatch.setenv("R2BENCH_CACHE", str(tmp_path / "cache"))
    out, dead = tmp_path / "out", _dead_pid()
    left = [out / "table9" / f".results.csv{TEMP_TAG}{_host()}-{dead}-q1w2e3r4",
            tmp_path / "cache" / "features" / f".v.safetensors{TEMP_TAG}{_host()}-{dead}-r4t5y6u7"]
    users = [out / ".notes.ABCDEFGH.tmp", out / "sub" / ".draft.tmp-abcd1234", out / ".report.r2tmp-otherhost-1-x"]
    for p in (*left, *users):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"half")
    assert cli.run_main(["--methods", "frozn", "--out", str(out), "--quiet", "--paper-scale"]) == 2   # refused
    assert all(p.exists() for p in (*left, *users))
    assert cli.run_main(["--report", "--out", str(out), "--quiet"]) in (0, 1)   # reads only: deletes nothing
    assert all(p.exists() for p in (*left, *users))
    monkeypatch.setattr(orchestrate, "execute_plan", lambda *a, **k: {})      # validated, then nothing to train
    cli.run_main(["--methods", "frozen", "--out", str(out), "--quiet", "--paper-scale"])
    assert not any(p.exists() for p in left) and all(p.exists() for p in users)


def test_temp_names_carry_their_writer(tmp_path):
    tmp = temp_dir_for(tmp_path / "folder")
    assert tmp.name.startswith(f".folder{TEMP_TAG}{_host()}-{os.getpid()}-")
    atomic_write(tmp_path / "f.txt", "x")
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == ["f.txt"]


# ---- checkpoints ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny") / "tiny.safetensors"
    T.save(T.create_model(), path, T._recipe(0, T.DEFAULT_STEPS))
    return path


def _flip_a_weight_byte(src: Path, dst: Path) -> Path:
    data = bytearray(src.read_bytes())
    header = 8 + int.from_bytes(data[:8], "little")
    data[header + (len(data) - header) // 2] ^= 0x40              # one bit of one weight, mid-file
    dst.write_bytes(bytes(data))
    return dst


def test_a_tiny_clip_with_a_flipped_weight_bit_is_refused_naming_the_file(tiny_checkpoint, tmp_path):
    assert verify_safetensors(tiny_checkpoint)["weights_checksum"]
    check_backbone("R2Bench-Tiny", tiny_checkpoint)                          # the sound file passes
    bad = _flip_a_weight_byte(tiny_checkpoint, tmp_path / "flipped.safetensors")
    with pytest.raises(ValueError, match=rf"{bad}: its weights do not match the checksum"):
        verify_safetensors(bad)
    with pytest.raises(BackboneError, match=rf"{bad}: its weights do not match the checksum"):
        check_backbone("R2Bench-Tiny", bad)


def test_the_default_tiny_clip_is_expanded_again_when_damaged_and_never_pretrained(tmp_path, monkeypatch):
    monkeypatch.setenv("R2BENCH_CACHE", str(tmp_path))

    def no_pretraining(*a, **k):
        raise AssertionError("ensure_tiny_clip must never pretrain")

    monkeypatch.setattr(T, "pretrain", no_pretraining)
    monkeypatch.setattr(T, "train", no_pretraining)
    cached = T.ensure_tiny_clip(0, progress=False)               # expanded from the shipped archive
    good = cached.read_bytes()
    assert cached == T.shipped_path(0) and verify_safetensors(cached).get("shipped")
    mtime = cached.stat().st_mtime_ns
    assert T.ensure_tiny_clip(0, progress=False) == cached and cached.stat().st_mtime_ns == mtime   # sound: reused
    _flip_a_weight_byte(cached, cached)
    with pytest.raises(ValueError):
        verify_safetensors(cached)
    assert T.ensure_tiny_clip(0, progress=False) == cached and cached.read_bytes() == good          # damaged: expanded again
    cached.write_bytes(b"")
    assert T.ensure_tiny_clip(0, progress=False) == cached and cached.read_bytes() == good          # truncated: the same


@pytest.mark.parametrize("content", [b"PK\x03\x04" + b"\x00" * 100, b"\x80\x02garbage", b""],
                         ids=["broken-zip", "broken-pickle", "empty"])
def test_a_corrupt_pt_checkpoint_is_refused_naming_the_file_not_torch_advice(tmp_path, content):
    path = tmp_path / "ViT-B-32.pt"
    path.write_bytes(content)
    with pytest.raises(BackboneError) as e:
        check_backbone("ViT-B-32", path)
    text = str(e.value)
    assert text.startswith(f"CLIP weights '{path}': not a readable checkpoint") and "high likelihood" not in text


def test_a_truncated_safetensors_checkpoint_is_refused_naming_the_file(tiny_checkpoint, tmp_path):
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(tiny_checkpoint.read_bytes()[:-1000])
    with pytest.raises(BackboneError, match=rf"{cut}: not a readable safetensors file"):
        check_backbone("R2Bench-Tiny", cut)


def test_no_torch_load_outside_weights_only():
    """Checkpoints are read as safetensors, or with ``torch.load(weights_only=True)`` (no
    arbitrary pickled code); no module calls plain ``torch.load`` or ``pickle``."""
    offenders = []
    for path in REPO.glob("[a-z]*/**/*.py"):
        if "tests" in path.parts:
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if ("torch.load(" in code and "weights_only=True" not in code) or "import pickle" in code \
                    or "pickle.load" in code:
                offenders.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert offenders == []
