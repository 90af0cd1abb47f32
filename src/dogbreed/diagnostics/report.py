"""One self-contained HTML report (plots embedded as base64 PNG) and a JSON summary of every rule outcome.

Both callbacks call write_diagnostics_report(run_dir) when they finish; it gathers whatever the debugger
(debug/) and the profiler (profile/) have written, so the last call produces the complete report.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from dogbreed.diagnostics.outcomes import ISSUES, NO_ISSUES, NOT_EVALUATED
from dogbreed.files import write_text_atomic

SECTIONS = (("debug", "Debugger: tensors and training rules"), ("profile", "Profiler: system and step rules"))
REPORT_NAME = "diagnostics_report.html"
SUMMARY_NAME = "rule_summary.json"
# Plots in reading order; others follow alphabetically.
PLOT_ORDER = ("loss", "grad_norms", "weight_norms", "step_times", "system_utilisation")
STATUS_COLOURS = {ISSUES: "#c62828", NO_ISSUES: "#2e7d32", NOT_EVALUATED: "#757575"}

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1200px; }
table { border-collapse: collapse; width: 100%; margin-bottom: 1.5em; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 6px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
.status { font-weight: bold; color: white; padding: 2px 6px; border-radius: 3px; white-space: nowrap; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0 1em; }
code { font-size: 12px; }
.counts span { margin-right: 1.5em; }
"""


def _numbers(numbers: dict) -> str:
    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    return ", ".join(f"{k}={fmt(v)}" for k, v in numbers.items())


def _outcome_rows(outcomes: list[dict]) -> str:
    rows = []
    for o in outcomes:
        colour = STATUS_COLOURS.get(o["status"], "#555")
        rows.append(
            "<tr>"
            f"<td><b>{html.escape(o['rule'])}</b><br><small>action: {html.escape(o['action'])}</small></td>"
            f"<td><span class='status' style='background:{colour}'>{html.escape(o['status'])}</span></td>"
            f"<td>{'' if o['step'] is None else o['step']}</td>"
            f"<td>{html.escape(o['message'])}<br><code>{html.escape(_numbers(o['numbers']))}</code></td>"
            f"<td>{html.escape(o['recommendation'])}</td>"
            f"<td><code>{html.escape(_numbers(o['parameters']))}</code></td>"
            "</tr>"
        )
    columns = ("rule", "status", "step", "details", "recommendation", "parameters")
    head = "<tr>" + "".join(f"<th>{c}</th>" for c in columns) + "</tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def _embedded_plots(plot_dir: Path) -> str:
    parts = []

    def order(png: Path) -> tuple[int, str]:
        return (PLOT_ORDER.index(png.stem) if png.stem in PLOT_ORDER else len(PLOT_ORDER), png.stem)

    for png in sorted(plot_dir.glob("*.png"), key=order):
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        parts.append(f"<h3>{html.escape(png.stem.replace('_', ' '))}</h3>")
        parts.append(f"<img alt='{html.escape(png.stem)}' src='data:image/png;base64,{data}'>")
    return "".join(parts)


def write_diagnostics_report(run_dir: str | Path) -> Path:
    """Write <run_dir>/rule_summary.json and <run_dir>/diagnostics_report.html from debug/ and profile/."""
    run_dir = Path(run_dir)
    all_outcomes: list[dict] = []
    body = []
    for sub, title in SECTIONS:
        path = run_dir / sub / "rule_outcomes.json"
        if not path.is_file():
            continue
        outcomes = json.loads(path.read_text())
        all_outcomes += outcomes
        body.append(f"<h2>{html.escape(title)}</h2>")
        summary = run_dir / sub / "summary.json"
        if summary.is_file():
            facts = json.loads(summary.read_text())
            items = "".join(
                f"<li>{html.escape(k)}: <b>{html.escape(str(v))}</b></li>" for k, v in facts.items()
            )
            body.append(f"<ul>{items}</ul>")
        body.append(_outcome_rows(outcomes))
        body.append(_embedded_plots(run_dir / sub / "plots"))

    counts = {s: sum(o["status"] == s for o in all_outcomes) for s in (ISSUES, NO_ISSUES, NOT_EVALUATED)}
    summary = {"run_dir": str(run_dir.resolve()), "counts": counts, "rules": all_outcomes}
    write_text_atomic(run_dir / SUMMARY_NAME, json.dumps(summary, indent=2, default=str))

    counts_html = "".join(
        f"<span style='color:{STATUS_COLOURS[s]}'><b>{n}</b> {s}</span>" for s, n in counts.items()
    )
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Training diagnostics</title>"
        f"<style>{STYLE}</style></head><body><h1>Training diagnostics</h1>"
        f"<p>{html.escape(str(run_dir.resolve()))}</p><p class='counts'>{counts_html}</p>"
        f"{''.join(body)}</body></html>"
    )
    out = run_dir / REPORT_NAME
    write_text_atomic(out, page)
    return out
