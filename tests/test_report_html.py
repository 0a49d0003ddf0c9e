"""The one report: every suite found is named and rendered with its provenance, every figure is
embedded (and loads in a real browser), a ledger that cannot be tabulated honestly is shown as
refused."""
import base64
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from r2bench.reports import __main__ as cli
from r2bench.reports.report import write_report
from r2bench.reports.tables import common
from tests.reports_fixtures import SuiteDir, vectors

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LOADED = """<script>window.addEventListener("load", () => { const imgs = [...document.images];
document.body.setAttribute("data-loaded", imgs.filter(i => i.complete && i.naturalWidth > 0).length + "/" + imgs.length);
});</script></body>"""


@pytest.fixture(autouse=True)
def fewer_resamples(monkeypatch):
    monkeypatch.setattr(common, "N_RESAMPLES", 1000)


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    """Three suite folders (dataset "toy": no videos, so only ledger figures are drawn)."""
    out = tmp_path_factory.mktemp("out")
    t9 = SuiteDir(out / "table9", "table9")
    t9.add("w/o Tuning", "frozen", values=vectors(12), category="no-tuning", memory_gib=4.0, dataset="toy")
    t9.add("R²-Tuning", "r2_tuning", values=vectors(12, shift=4), memory_gib=9.0, dataset="toy", memory_source="cuda")
    t9.add("LoRA", "lora", status="failed", error="boom", dataset="toy", category="PETL")
    fig7 = SuiteDir(out / "fig7", "fig7")
    fig7.add("K=1 (all strategies)", values=vectors(12), config={"k": 1}, dataset="toy", memory_gib=7.0)
    fig7.add("Reversed K=2", values=vectors(12, shift=1), config={"k": 2}, dataset="toy")
    ps = SuiteDir(out / "table9_paper_scale", "table9")
    ps.add("R²-Tuning", "r2_tuning", dataset="paper-scale", weights="random-init", memory_gib=8.3)
    from r2bench.bench.suites import SUITES
    html, md, results = write_report(out, suites=SUITES)
    return out, html, md, results


def embedded(html_text: str) -> list[str]:
    return re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html_text)


def test_report_names_every_suite_with_its_provenance(out):
    _, html, md, results = out
    text = md.read_text()
    for title in ("## Suite table9 (table9)", "## Suite fig7 (fig7)",
                  "## Suite table9 — paper scale (params and memory only) (table9_paper_scale)"):
        assert title in text
    assert text.index("Suite table9 (table9)") < text.index("Suite fig7")          # paper order
    for needle in ("| code version | abc123+def |", "| weights (file#digest) | tiny.safetensors#00aa |",
                   "| dataset (version) | toy (v1) |", "| seeds | 0 |", "estimate (estimated on fake tensors, 2 runs)",
                   "cuda (measured on CUDA, 1 runs)", "| runs | 1 failed, 2 ok |", "torch 2.x", "| device | cpu |",
                   "| commit | abc123 |", "| benchmark version | synthetic-g2c2-default |"):
        assert needle in text, needle
    assert "### Table 9 — transfer methods: ours vs paper" in text and "failed: boom" in text
    assert "Figure 7 — feature refinement strategies" in text


def test_html_embeds_every_figure_as_a_png(out):
    _, html, md, results = out
    page = html.read_text()
    figures = [f for r in results for f in r.figures]
    assert {f.name for f in figures} == {"tradeoff", "fig7"}
    images = embedded(page)
    assert len(images) == len(figures) == 4          # tradeoff ×3 suites, fig7
    assert all(base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n" for _, data in images)
    assert "src=\"http" not in page and "<link" not in page                         # self-contained
    md_links = re.findall(r"!\[[^]]*\]\(([^)]+)\)", md.read_text())
    assert len(md_links) == 4 and all((html.parent / link).is_file() for link in md_links)
    # figures that need a model say why they were not drawn
    assert "figure <b>qualitative</b> not drawn: no figures from frames for dataset &#x27;toy&#x27; yet" in page
    assert re.search(r"figure <b>fig8</b> not drawn: run table9-r2_tuning-toy-s0-\d+ has no checkpoint", page)


def test_a_ledger_with_two_configurations_under_one_row_is_shown_as_refused(tmp_path, capsys):
    s = SuiteDir(tmp_path / "table12", "table12")
    s.add("2 layers", seed=0, values=vectors(8), config={"temporal_layers": 2})
    s.add("2 layers", seed=1, values=vectors(8), config={"temporal_layers": 3})
    assert cli.main([str(tmp_path), "--no-figures"]) == 1
    assert "NOT RENDERED" in capsys.readouterr().err
    page = (tmp_path / "report.html").read_text()
    assert ("Not rendered: table12 on synthetic: row &#x27;2 layers&#x27;: runs differ in config (temporal_layers)"
            in page)


def test_cli_on_a_missing_folder(tmp_path, capsys):
    assert cli.main([str(tmp_path / "nowhere")]) == 2
    assert "no such output folder" in capsys.readouterr().err


@pytest.mark.skipif(not CHROMIUM.is_file(), reason="no /usr/bin/chromium (apt-get install chromium)")
def test_every_figure_loads_in_headless_chromium(out, tmp_path):
    _, html, _, results = out
    page = tmp_path / "page.html"
    page.write_text(html.read_text().replace("</body>", LOADED))
    n = len(embedded(html.read_text()))
    flags = [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000"]
    dom = subprocess.run([str(CHROMIUM), *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    assert f'data-loaded="{n}/{n}"' in dom
    shot = tmp_path / "report.png"
    subprocess.run([str(CHROMIUM), *flags, f"--screenshot={shot}", "--window-size=1280,2400", page.as_uri()],
                   capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 10_000
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)


@pytest.mark.skipif(not CHROMIUM.is_file(), reason="no /usr/bin/chromium (apt-get install chromium)")
def test_the_browser_check_can_fail(tmp_path):
    """A broken image is counted as not loaded (the check above is not vacuous)."""
    page = tmp_path / "broken.html"
    page.write_text('<html><body><img alt="x" src="data:image/png;base64,AAAA"></body></html>'.replace(
        "</body>", LOADED))
    flags = [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]
    dom = subprocess.run([str(CHROMIUM), *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    assert 'data-loaded="0/1"' in dom
