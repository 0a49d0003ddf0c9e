"""One report of every suite under an output folder: ``report.html`` (self-contained: images
embedded as base64, no external file or network access) and ``report.md`` (images linked).

Each suite's section gives its provenance — commit, code version, library versions, device,
backbone and weights digest, dataset and its version, seeds, whether the memory figures were
measured or estimated — then its tables and figures, and the figures that could not be drawn,
with the reason. A suite whose ledger cannot be tabulated honestly shows the refusal instead.
"""
from __future__ import annotations

import base64
import html
import logging
import os
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping

from r2bench.core.errors import InputError
from r2bench.core.io import atomic_write
from r2bench.reports import records as rec
from r2bench.reports.figures.sources import Sources
from r2bench.reports.render import Rendered, SuiteLike, render_suite
from r2bench.reports.tables.common import TableError, to_html, to_markdown

log = logging.getLogger(__name__)
CSS = """
body { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1200px;
       color: #222; line-height: 1.4; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-top: 1em; } h3 { font-size: 1.05em; }
table { border-collapse: collapse; font-size: 0.8em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 2px 6px; } th { background: #f3f3f3; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
.scroll { overflow-x: auto; }
.warning { color: #b00; font-weight: bold; }
.error { color: #b00; background: #fee; padding: 0.5em; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #444; }
dl.prov { display: grid; grid-template-columns: max-content auto; gap: 2px 12px; font-size: 0.85em; }
dl.prov dt { font-weight: bold; } dl.prov dd { margin: 0; }
"""


def _values(records: list[dict], key: str) -> list[str]:
    return sorted({str(r.get(key)) for r in records if r.get(key) not in (None, "", {})})


def provenance(records: list[dict]) -> list[tuple[str, str]]:
    """(label, value) lines saying where the suite's numbers come from."""
    ok = [r for r in records if r.get("status") == "ok"]
    status = Counter(r.get("status") for r in records)
    versions = sorted({", ".join(f"{k} {v}" for k, v in sorted((r.get("versions") or {}).items()))
                       for r in records if r.get("versions")})
    devices = sorted({str(r.get("device")) for r in records if r.get("device")})
    memory = []
    for source in _values(records, "memory_source"):
        n = sum(r.get("memory_source") == source for r in records)
        memory.append(f"{source} ({'measured on CUDA' if source == 'cuda' else 'estimated on fake tensors'}, {n} runs)")
    times = sorted(t for r in records for t in (r.get("started"), r.get("finished")) if t)
    seeds = sorted({r.get("seed") for r in ok if r.get("seed") is not None})
    return [
        ("runs", ", ".join(f"{n} {s}" for s, n in sorted(status.items())) or "none"),
        ("commit", ", ".join(_values(records, "commit")) or "not recorded"),
        ("code version", ", ".join(_values(records, "code_version")) or "not recorded"),
        ("versions", "; ".join(versions) or "not recorded"),
        ("device", ", ".join(devices) or "not recorded"),
        ("backbone", ", ".join(_values(records, "backbone")) or "not recorded"),
        ("weights (file#digest)", ", ".join(_values(records, "weights")) or "not recorded"),
        ("dataset (version)", ", ".join(sorted({f"{r.get('dataset')} ({r.get('dataset_version') or 'no version'})"
                                               for r in records})) or "not recorded"),
        ("benchmark version", ", ".join(_values(records, "benchmark_version")) or "none (not a generated benchmark)"),
        ("seeds", ", ".join(map(str, seeds)) or "none finished"),
        ("memory", "; ".join(memory) or "not measured"),
        ("when", f"{times[0]} – {times[-1]}" if times else "not recorded"),
        ("ledger", str(Path(records[0]["_suite_dir"]) / rec.LEDGER_NAME) if records else "–"),
    ]


def collect(out_dir: str | Path, *, figures: bool = True, sources: Sources | None = None,
            suites: Mapping[str, SuiteLike] | None = None) -> list[Rendered | tuple]:
    """Render every suite found under ``out_dir``, in the order of ``suites`` (the declared
    suites by name; a suite not declared there gets the generic table, after them): a
    ``Rendered`` per suite, or ``(suite, folder, error)`` for a suite whose ledger cannot be rendered."""
    suites = dict(suites or {})
    order = list(suites)

    def _order(item: tuple) -> tuple:
        suite, path = item[:2]
        return (order.index(suite) if suite in order else len(order), suite, str(path))

    found = []
    for suite_dir in rec.find_suite_dirs(out_dir):
        try:
            records = rec.load_records(suite_dir)
            found.append((rec.suite_name(records, suite_dir), suite_dir))
        except InputError as e:
            found.append((suite_dir.name, suite_dir, e))
    results = []
    for item in sorted(found, key=_order):
        if len(item) == 3:
            results.append(item)
            continue
        suite, suite_dir = item
        try:
            results.append(render_suite(suite_dir, suite=suites.get(suite), figures=figures, sources=sources))
        except (TableError, InputError, ValueError) as e:
            log.error("suite %s (%s): %s", suite, suite_dir, e)
            results.append((suite, suite_dir, e))
    return results


PROBE_TITLE = "The shipped tiny CLIP: what each layer keeps (probe)"
PROBE_TEXT = ("Held-out accuracy (%) of a ridge probe per layer of the frozen backbone the built-in benchmark runs "
              "on (cls: the class token; tokens: every token of the frame), recorded when the weights were shipped "
              "(3,000 scenes; docs/benchmark.md). A method that recovers detail from intermediate layers can only "
              "gain where the last layer has lost it.")


def shipped_backbone_probe(results: list) -> list[list[str]] | None:
    """The recorded probe table of the shipped tiny CLIP (header row first), when some suite in
    ``results`` ran on those weights; None otherwise."""
    import json
    from r2bench.datasets.synthetic.probe import table_rows
    from r2bench.datasets.synthetic.tiny_clip import SHIPPED_PROBE, shipped_name
    name = shipped_name(0) + "#"
    if not any(str(x.get("weights") or "").startswith(name)
               for r in results if not isinstance(r, tuple) for x in r.records):
        return None
    try:
        probe = json.loads(SHIPPED_PROBE.read_text())
    except (OSError, ValueError) as e:
        log.warning("the shipped backbone's probe table is left out of the report: %s: %s", SHIPPED_PROBE, e)
        return None
    return table_rows(probe)


def _section_title(r: Rendered) -> str:
    paper_scale = any(x.get("dataset") == rec.PAPER_SCALE for x in r.records)
    return f"Suite {r.suite}" + (" — paper scale (params and memory only)" if paper_scale else "") + \
        f" ({r.suite_dir.name})"


def to_markdown_report(results: list, out_dir: Path) -> str:
    lines = ["# R²-Bench report", "", f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC} from `{out_dir}`.", ""]
    lines += ["Suites: " + (", ".join(_name(r) for r in results) or "none found"), ""]
    for r in results:
        if isinstance(r, tuple):
            suite, folder, error = r
            lines += [f"## Suite {suite} ({folder.name})", "", f"**Not rendered:** {error}", ""]
            continue
        lines += [f"## {_section_title(r)}", "", "| provenance | |", "|---|---|"]
        lines += [f"| {k} | {v.replace('|', '/')} |" for k, v in provenance(r.records)]
        lines.append("")
        for table in r.tables:
            text = to_markdown(table)
            lines += ["### " + text[2:] if text.startswith("# ") else text, ""]
        for fig in r.figures:
            rel = os.path.relpath(fig.png, out_dir)
            lines += [f"![{fig.name}]({rel})", "", f"*{fig.caption}* (PDF: `{os.path.relpath(fig.paths[-1], out_dir)}`)", ""]
        for name, why in r.skipped:
            lines += [f"- figure **{name}** not drawn: {why}"]
        lines.append("")
    probe = shipped_backbone_probe(results)
    if probe:
        from r2bench.datasets.synthetic.probe import rows_to_markdown
        lines += [f"## {PROBE_TITLE}", "", PROBE_TEXT, "", *rows_to_markdown(probe)]
    return "\n".join(lines).rstrip() + "\n"


def _name(r) -> str:
    return r[0] if isinstance(r, tuple) else r.suite


def to_html_report(results: list, out_dir: Path) -> str:
    e = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', "<title>R²-Bench report</title>",
             f"<style>{CSS}</style></head><body>", "<h1>R²-Bench report</h1>",
             f"<p>Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC} from <code>{e(str(out_dir))}</code>.</p>",
             "<p>Suites: " + (", ".join(f'<a href="#{e(_anchor(r))}">{e(_name(r))}</a>' for r in results)
                              or "none found") + "</p>"]
    for r in results:
        if isinstance(r, tuple):
            suite, folder, error = r
            parts += [f'<h2 id="{e(_anchor(r))}">Suite {e(suite)} ({e(folder.name)})</h2>',
                      f'<p class="error">Not rendered: {e(str(error))}</p>']
            continue
        parts.append(f'<h2 id="{e(_anchor(r))}">{e(_section_title(r))}</h2>')
        parts.append('<dl class="prov">' + "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in provenance(r.records))
                     + "</dl>")
        for table in r.tables:
            parts.append(to_html(table))
        for fig in r.figures:
            data = base64.b64encode(fig.png.read_bytes()).decode("ascii")
            parts.append(f'<figure data-figure="{e(fig.name)}"><img alt="{e(fig.name)}" '
                         f'src="data:image/png;base64,{data}"><figcaption>{e(fig.caption)} '
                         f'(PDF: <code>{e(os.path.relpath(fig.paths[-1], out_dir))}</code>)</figcaption></figure>')
        if r.skipped:
            parts.append("<ul>" + "".join(f"<li>figure <b>{e(n)}</b> not drawn: {e(w)}</li>" for n, w in r.skipped)
                         + "</ul>")
    probe = shipped_backbone_probe(results)
    if probe:
        parts += [f'<h2 id="probe">{e(PROBE_TITLE)}</h2>', f"<p>{e(PROBE_TEXT)}</p>", '<table class="probe">',
                  "<tr>" + "".join(f"<th>{e(c)}</th>" for c in probe[0]) + "</tr>"]
        parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in probe[1:]]
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _anchor(r) -> str:
    if isinstance(r, tuple):
        return f"suite-{r[0]}-{r[1].name}"
    return f"suite-{r.suite}-{r.suite_dir.name}"


def write_report(out_dir: str | Path, report_dir: str | Path | None = None, *, figures: bool = True,
                 sources: Sources | None = None, suites: Mapping[str, SuiteLike] | None = None
                 ) -> tuple[Path, Path, list]:
    """Render every suite under ``out_dir`` as ``suites`` declares them and write ``report.html``
    and ``report.md`` (into ``report_dir``, default ``out_dir``). Returns both paths and the
    per-suite results."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise InputError(out_dir, None, None, "no such output folder")
    report_dir = Path(report_dir or out_dir)
    results = collect(out_dir, figures=figures, sources=sources, suites=suites)
    html_path = atomic_write(report_dir / "report.html", to_html_report(results, report_dir))
    md_path = atomic_write(report_dir / "report.md", to_markdown_report(results, report_dir))
    return html_path, md_path, results
