"""Throughput charts as inline SVG, drawn on the server: finished jobs (green) with the failed ones stacked on
top (red), one bar per minute, half hour or hour. No script and no network: the page carries the chart."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

from ..jobs.throughput import Bar

FINISHED_FILL = "#3aa35c"
FAILED_FILL = "#d64545"


def _bars(bars: Sequence[Bar], width: float, height: float, top: float, bar_s: int) -> list[str]:
    """The rects of `bars` scaled so the tallest fills `height` below `top`, each with a tooltip."""
    peak = max((bar.finished + bar.failed for bar in bars), default=0) or 1
    step = width / max(len(bars), 1)
    parts = []
    for index, bar in enumerate(bars):
        x = index * step
        done_h = bar.finished / peak * height
        failed_h = bar.failed / peak * height
        label = f"{bar.start:%Y-%m-%d %H:%M} UTC, {bar_s // 60} min: {bar.finished} finished, {bar.failed} failed"
        box = f'x="{x:.1f}" width="{max(step - 1, 1):.1f}"'
        rects = []
        if bar.finished:
            y = top + height - done_h
            rects.append(f'<rect {box} y="{y:.1f}" height="{done_h:.1f}" fill="{FINISHED_FILL}"/>')
        if bar.failed:
            y = top + height - done_h - failed_h
            rects.append(f'<rect {box} y="{y:.1f}" height="{failed_h:.1f}" fill="{FAILED_FILL}"/>')
        # A transparent full-height rect carries the tooltip, so an empty bar can be hovered too.
        hover = f'<rect x="{x:.1f}" y="{top}" width="{step:.1f}" height="{height}" fill="transparent"/>'
        parts.append(f"<g><title>{escape(label)}</title>{hover}{''.join(rects)}</g>")
    return parts


def bar_chart(bars: Sequence[Bar], bar_s: int, element_id: str, width: int = 760, height: int = 120) -> Markup:
    """A chart of `bars` with its peak and its first and last times written on it."""
    peak = max((bar.finished + bar.failed for bar in bars), default=0)
    top, plot_h = 14, height - 30
    first = f"{bars[0].start:%m-%d %H:%M}" if bars else ""
    last = f"{bars[-1].start:%m-%d %H:%M} UTC" if bars else ""
    body = "".join(_bars(bars, width, plot_h, top, bar_s))
    return Markup(
        f'<svg id="{escape(element_id)}" class="chart" role="img" viewBox="0 0 {width} {height}" '
        f'width="100%" height="{height}" preserveAspectRatio="none" aria-label="jobs finished and failed">'
        f'<line x1="0" y1="{top + plot_h}" x2="{width}" y2="{top + plot_h}" stroke="#c9ced8"/>'
        f'<text x="2" y="10" font-size="10" fill="#6b7385">peak {peak} a bar</text>{body}'
        f'<text x="2" y="{height - 4}" font-size="10" fill="#6b7385">{first}</text>'
        f'<text x="{width - 2}" y="{height - 4}" font-size="10" fill="#6b7385" text-anchor="end">{last}</text></svg>'
    )


def sparkline(bars: Sequence[Bar], bar_s: int, width: int = 120, height: int = 22) -> Markup:
    """A small chart of `bars` for a table cell."""
    body = "".join(_bars(bars, width, height - 2, 1, bar_s))
    return Markup(
        f'<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'preserveAspectRatio="none" role="img" aria-label="jobs finished and failed">{body}</svg>'
    )
