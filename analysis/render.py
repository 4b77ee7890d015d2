"""Draw ``figures.Figure`` descriptions as PNG (matplotlib) or interactive HTML (plotly).

Both libraries are imported inside the functions: Ray workers import the
``analysis`` package (the search shares its Pareto routine) and must not
pay for, or depend on, a plotting stack.
"""

from __future__ import annotations

from pathlib import Path

from .figures import Figure

_MATPLOTLIB_MARKERS = {"circle": "o", "ring": "o", "star": "*", "x": "x"}
_PLOTLY_SYMBOLS = {"circle": "circle", "ring": "circle-open", "star": "star", "x": "x"}


def to_png(figure: Figure, path: Path) -> Path:
    """Write ``figure`` as a PNG at ``path``."""
    from matplotlib.figure import Figure as MatplotlibFigure  # no pyplot: no global state, no GUI backend
    from matplotlib.ticker import MaxNLocator

    canvas = MatplotlibFigure(figsize=(7.5, 4.8), layout="constrained")
    axes = canvas.subplots()
    labelled: set[str] = set()
    for trace in figure.traces:
        if trace.kind == "heatmap":  # values in [0, 1], a colour bar instead of a legend
            mesh = axes.pcolormesh(trace.x, trace.y, trace.z, shading="nearest", cmap="viridis", vmin=0.0, vmax=1.0)
            canvas.colorbar(mesh, ax=axes)
            axes.yaxis.set_major_locator(MaxNLocator(integer=True))
            continue
        key = trace.group or trace.name
        label = None if key in labelled else key
        labelled.add(key)
        if trace.kind == "lines":
            axes.plot(trace.x, trace.y, color=trace.color, linewidth=trace.width, alpha=0.85, label=label)
        else:
            ring, cross = trace.symbol == "ring", trace.symbol == "x"
            axes.scatter(trace.x, trace.y, s=trace.size ** 2, marker=_MATPLOTLIB_MARKERS[trace.symbol], label=label,
                         c=None if ring else trace.color, facecolors="none" if ring else None,
                         edgecolors=None if cross else trace.color, linewidths=1.5 if ring or cross else 0.5, zorder=3)
    axes.set(title=figure.title, xlabel=figure.xlabel, ylabel=figure.ylabel)
    if figure.logy:
        axes.set_yscale("log")
    if not any(trace.kind == "heatmap" for trace in figure.traces):
        axes.grid(alpha=0.3)
    if labelled:
        axes.legend(fontsize="small", loc="best")
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.savefig(path, dpi=110)
    return path


def to_html_div(figure: Figure) -> str:
    """``figure`` as an HTML fragment that needs plotly.js (``plotly_js``) on the page."""
    import plotly.graph_objects as go

    plot = go.Figure()
    labelled: set[str] = set()
    for trace in figure.traces:
        key = trace.group or trace.name
        common = dict(x=trace.x, y=trace.y, name=key, legendgroup=key, showlegend=key not in labelled,
                      text=trace.hover, hovertemplate="%{text}<br>x=%{x:.4g}<br>y=%{y:.4g}<extra></extra>" if trace.hover else None)
        labelled.add(key)
        if trace.kind == "heatmap":
            plot.add_trace(go.Heatmap(x=trace.x, y=trace.y, z=trace.z, zmin=0.0, zmax=1.0, colorscale="Viridis", name=key))
        elif trace.kind == "lines":
            plot.add_trace(go.Scatter(mode="lines", line=dict(color=trace.color, width=trace.width), **common))
        else:
            plot.add_trace(go.Scatter(mode="markers", marker=dict(color=trace.color, size=trace.size, symbol=_PLOTLY_SYMBOLS[trace.symbol],
                                                                  line=dict(width=1.5 if trace.symbol == "ring" else 0.5, color=trace.color)), **common))
    plot.update_layout(title=figure.title, xaxis_title=figure.xlabel, yaxis_title=figure.ylabel, template="plotly_white",
                       height=460, margin=dict(l=60, r=20, t=50, b=50))
    if figure.logy:
        plot.update_yaxes(type="log")
    return plot.to_html(full_html=False, include_plotlyjs=False, div_id=f"figure-{figure.name}")


def plotly_js() -> str:
    """plotly.js itself, to inline once so the report needs no network."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()
