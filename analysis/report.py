"""Plots as PNG files and one self-contained HTML report (plotly.js inlined, no network needed)."""

from __future__ import annotations

import html
import time
from pathlib import Path

import pandas as pd

from .figures import Figure, colours, front_figure, gate_figures, history_figures, hypervolume_figure
from .labels import Labels
from .summary import Analysis, display_table
from .tables import front_columns

REPORT_FILE = "report.html"
# A table wider than the page scrolls inside its own box, so the page never
# scrolls sideways; cells stay on one line but the comparison's configurations, which wrap.
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; padding: 0 1rem; max-width: 1200px; color: #222; }
p, li { overflow-wrap: anywhere; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
.table-scroll { max-width: 100%; overflow-x: auto; margin: 0.5rem 0; }
table { border-collapse: collapse; font-size: 0.85rem; }
th, td { padding: 0.25rem 0.6rem; border-bottom: 1px solid #eee; text-align: right; white-space: nowrap; }
table.comparison td:nth-child(2) { min-width: 16rem; max-width: 30rem; white-space: normal; text-align: left; }
th { background: #f6f6f6; } td:first-child, th:first-child { text-align: left; }
.notes li { color: #8a5300; } .muted { color: #666; }
"""


def build_figures(analysis: Analysis, history: pd.DataFrame, by: str = "approach") -> list[Figure]:
    """Every figure of the report: front, training curves, structure ratios, gates, energy, hypervolume."""
    palette = colours(analysis.trials[by]) if by in analysis.trials.columns else {}
    labels = Labels.of(analysis.objectives, analysis.quality_metric)
    figures = []
    if len(analysis.front):
        excluded = analysis.trials[~analysis.trials.index.isin(analysis.considered.index)]
        figures.append(front_figure(analysis.considered, analysis.objectives, excluded=excluded, knee=analysis.knee, by=by,
                                    palette=palette, labels=labels))
    figures += history_figures(history, by=by, palette=palette, labels=labels)
    figures += gate_figures(history, by=by)
    if len(analysis.trace):
        figures.append(hypervolume_figure(analysis.trace))
    return figures


def write_plots(figures: list[Figure], directory: Path) -> list[Path]:
    """Each figure as ``<directory>/<name>.png``."""
    from .render import to_png

    return [to_png(figure, Path(directory) / f"{figure.name}.png") for figure in figures]


def write_report(analysis: Analysis, figures: list[Figure], path: Path) -> Path:
    """The single-file HTML report."""
    from .render import plotly_js, to_html_div

    divs = {figure.name: to_html_div(figure) for figure in figures}
    history_divs = "\n".join(div for name, div in divs.items() if name not in ("front", "hypervolume"))
    sections = [
        _section("summary", "Summary", _summary(analysis)),
        _section("front", "Pareto front", divs.get("front", "") + _front_table(analysis)),
        _section("table", f"Against {html.escape(analysis.baseline or 'a baseline')}", _comparison(analysis)),
        _section("approaches", "Per approach", _table(analysis.approaches) if len(analysis.approaches) else "<p>No finished trial.</p>"),
        _section("noise", "Seed-noise front", _noise(analysis)),
        _section("training", "Over training", history_divs or "<p>No history.</p>"),
        _section("search", "Hypervolume over the search", divs.get("hypervolume", "<p>No finished trial.</p>")),
    ]
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>greentune: {html.escape(analysis.source)}</title><style>{_STYLE}</style>"
        f"<script>{plotly_js()}</script></head><body>"
        f"<h1>greentune analysis</h1><p class=\"muted\">{html.escape(analysis.source)} · written {time.strftime('%Y-%m-%d %H:%M')}</p>"
        + "".join(sections) + "</body></html>\n"
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def _section(anchor: str, title: str, body: str) -> str:
    return f"<section id=\"{anchor}\"><h2>{html.escape(title)}</h2>{body}</section>"


def _table(frame: pd.DataFrame) -> str:
    return _scrolling(frame.rename(columns=lambda column: str(column).split("/")[-1]).to_html(
        index=False, na_rep="", border=0, float_format=lambda value: f"{value:.4g}"
    ))


def _scrolling(table: str) -> str:
    return f"<div class=\"table-scroll\">{table}</div>"


def _summary(analysis: Analysis) -> str:
    trials = analysis.trials
    counts = trials["status"].value_counts().to_dict() if "status" in trials.columns else {}
    items = [
        f"{len(trials)} trials: " + ", ".join(f"{count} {status}" for status, count in counts.items()),
        "objectives: " + ", ".join(f"{column} ({mode})" for column, mode in analysis.objectives.items())
        + (f"; quality is the task's {analysis.quality_metric['name']}" if analysis.quality_metric else ""),
        f"constraints: {', '.join(analysis.constraints) or 'none'}; {len(analysis.considered)} finished trials considered",
    ]
    if "energy_source" in analysis.considered.columns:
        items.append("energy source: " + ", ".join(map(str, analysis.considered["energy_source"].dropna().unique())))
    if "co2_g" in analysis.considered.columns:
        sources = ", ".join(map(str, analysis.considered.get("carbon_source", pd.Series(dtype=str)).dropna().unique()))
        items.append(f"emissions: {analysis.considered['co2_g'].sum():.4g} g CO2 over the trials considered "
                     f"(energy × grid intensity only; intensity: {sources or 'unknown'})")
    if analysis.reference:
        reference = ", ".join(f"{column}={value:.4g}" for column, value in analysis.reference.items())
        items.append(f"hypervolume {analysis.hypervolume:.6g} against reference point {reference}")
    if analysis.knee is not None:
        knee = analysis.knee
        items.append(f"knee: trial {knee.get('trial_id', knee.name)} ({knee.get('approach', '')}), "
                     + ", ".join(f"{column}={knee[column]:.4g}" for column in analysis.objectives))
    body = "<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in items) + "</ul>"
    if analysis.notes:
        body += "<ul class=\"notes\">" + "".join(f"<li>{html.escape(note)}</li>" for note in analysis.notes) + "</ul>"
    return body


def _front_table(analysis: Analysis) -> str:
    if analysis.front.empty:
        return "<p>No finished trial meets the constraints, so there is no front.</p>"
    columns = ["trial_id", *front_columns(analysis.front, analysis.objectives)]
    return _table(analysis.front[[column for column in columns if column in analysis.front.columns]])


def _comparison(analysis: Analysis) -> str:
    if analysis.table is None:
        return "<p>No baseline to compare with; name one with --baseline.</p>"
    return "<p class=\"muted\">Mean ± std over each configuration's runs; gains relative to the baseline, positive when cheaper; " \
           "quality loss positive when worse.</p>" + _scrolling(display_table(analysis.table).to_html(index=False, border=0, classes="comparison"))


def _noise(analysis: Analysis) -> str:
    if analysis.front.empty:
        return "<p>No finished trial.</p>"
    if analysis.noisy.empty:
        return "<p>Every configuration ran once, so there is no seed-to-seed spread to show; " \
               "repeat each configuration (<code>repeats: 3</code> in the search file) to see which front members survive it.</p>"
    noisy = analysis.noisy.sort_values("front_probability", ascending=False)
    noisy = noisy[noisy["front_probability"] > 0]
    columns = [*front_columns(noisy, analysis.objectives), "runs", "front_probability", "robust"]
    return "<p class=\"muted\">How often each configuration stays non-dominated when its means are redrawn within " \
           "their seed-to-seed uncertainty (see analysis.repeats).</p>" + _table(noisy[columns])
