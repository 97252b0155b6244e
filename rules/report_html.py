"""The scorecard report as one self-contained HTML page: inline CSS and hand-drawn SVG charts.

Nothing is fetched: no fonts, scripts or styles from elsewhere, so the file opens offline
and can be mailed. A few lines of inline script record where each chart landed on the
page (``data-layout`` on ``<body>``) so automated checks can look at the rendered pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from html import escape

from rules.report import money, percent, period_text, rates_text
from rules.scorecards import OUTCOMES, Scorecard, ScorecardReport

MAX_BARS = 15  # charts show the top of the ranking; the table lists everyone
MAX_LINES = 5
REGISTERED, UNREGISTERED, OWN, PEERS, HISTOGRAM = (
    "#2563eb", "#f59e0b", "#16a34a", "#9ca3af", "#7c3aed")
PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#f59e0b", "#7c3aed", "#0891b2")
BUCKET_DAYS, BUCKETS = 30, 13  # 0-29, 30-59, ... 360+

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px;color:#111827;
background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px}
.meta{color:#4b5563;font-size:13px;margin:2px 0}
table{border-collapse:collapse;font-size:13px;width:100%}
th,td{border-bottom:1px solid #e5e7eb;padding:5px 6px;text-align:right;white-space:nowrap}
th{background:#f3f4f6;position:sticky;top:0}td.l,th.l{text-align:left}
tr.paper_partner td{background:#fef2f2}.verdict-paper_partner{color:#b91c1c;font-weight:600}
.verdict-healthy{color:#15803d}.verdict-insufficient_data{color:#6b7280}
.scroll{overflow-x:auto}td.verdict{white-space:normal;min-width:160px;text-align:left}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(560px,1fr));gap:24px}
figure.chart{margin:0;border:1px solid #e5e7eb;border-radius:8px;padding:12px}
figcaption{font-weight:600;font-size:14px;margin-bottom:8px}
svg text{font-size:11px;fill:#374151}.legend{font-size:12px;color:#374151}
.swatch{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px;border-radius:2px}
"""

LAYOUT_SCRIPT = """
addEventListener('load',function(){var out={};
document.querySelectorAll('figure.chart').forEach(function(f){
var r=f.querySelector('svg').getBoundingClientRect();
out[f.id]=[r.left,r.top+scrollY,r.width,r.height].map(Math.round);});
document.body.setAttribute('data-layout',JSON.stringify(out));});
"""


def render_html(report: ScorecardReport) -> str:
    cards = report.scorecards
    top = cards[:MAX_BARS]
    territory = f" - territory {escape(report.territory)}" if report.territory else ""
    skipped = ("<p class='meta'>Deals in a currency without a configured rate, left out of "
               f"amounts: {len(report.skipped)}</p>") if report.skipped else ""
    return "".join((
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>Distributor scorecards</title><style>", CSS, "</style></head><body>",
        f"<h1>Distributor scorecards{territory}</h1>",
        f"<p class='meta'>Period: {escape(period_text(report))}</p>",
        f"<p class='meta'>Currency: {escape(rates_text(report))}</p>", skipped,
        "<h2>Ranking</h2>", _ranking(cards, report.base_currency),
        "<h2>Charts</h2><div class='charts'>",
        _figure("chart-win-rate", "Win rate: registered vs non-registered deals",
                _legend((REGISTERED, "registered"), (UNREGISTERED, "non-registered")),
                _paired_bars(top, _win_rates, percent_axis=True, colors=(
                    REGISTERED, UNREGISTERED))),
        _figure("chart-deal-size",
                f"Average won deal size vs territory peers ({escape(report.base_currency)})",
                _legend((OWN, "distributor"), (PEERS, "other distributors, same territory")),
                _paired_bars(top, _deal_sizes, percent_axis=False, colors=(OWN, PEERS))),
        _figure("chart-days-to-close", "Registration to close (days, all distributors)", "",
                _histogram(cards)),
        _figure("chart-active", "Active registrations over time",
                _legend(*((PALETTE[i % len(PALETTE)], c.distributor_id)
                          for i, c in enumerate(_busiest(cards)))),
                _lines(report)),
        "</div><script>", LAYOUT_SCRIPT, "</script></body></html>",
    ))


def _ranking(cards: Sequence[Scorecard], currency: str) -> str:
    head = ("<div class='scroll'><table><thead><tr><th>#</th><th class='l'>Distributor</th>"
            "<th class='l'>Territory</th><th>Active</th><th>Pipeline</th>"
            + "".join(f"<th>{o.capitalize()}</th>" for o in OUTCOMES)
            + "<th>Win reg.</th><th>Win non-reg.</th><th>Avg won</th><th>Peers</th>"
            "<th>Days p50</th><th>Days p90</th><th>Conflicts</th><th class='l'>Verdict</th>"
            "</tr></thead><tbody>")
    rows = []
    for rank, c in enumerate(cards, start=1):
        conflicts = ", ".join(f"{k.replace('_', ' ')}: {n}" for k, n in c.conflicts.items())
        rows.append(
            f"<tr class='{c.verdict}'><td>{rank}</td><td class='l'>{escape(c.distributor_id)}"
            f"</td><td class='l'>{escape(c.territory or '-')}</td>"
            f"<td>{c.active_registrations}</td><td>{money(c.active_pipeline, currency)}</td>"
            + "".join(f"<td>{c.outcomes[o]}</td>" for o in OUTCOMES)
            + f"<td>{percent(c.win_rate_registered)}</td>"
            f"<td>{percent(c.win_rate_unregistered)}</td><td>{money(c.average_won)}</td>"
            f"<td>{money(c.peer_average_won)}</td>"
            f"<td>{'-' if c.days_to_close_median is None else f'{c.days_to_close_median:g}'}"
            f"</td><td>{'-' if c.days_to_close_p90 is None else c.days_to_close_p90}</td>"
            f"<td title='{escape(conflicts)}'>{sum(c.conflicts.values())}</td>"
            f"<td class='verdict verdict-{c.verdict}'>{escape(_verdict_text(c))}</td></tr>"
        )
    return head + "".join(rows) + "</tbody></table></div>"


def _verdict_text(card: Scorecard) -> str:
    if card.verdict != "paper_partner":
        return card.verdict.replace("_", " ")
    f = card.verdict_figures
    return (f"paper partner: {f['registrations']} registrations, "
            f"{percent(f['win_rate_registered'])} won, {f['history_months']} months")


def _figure(chart_id: str, title: str, legend: str, svg: str) -> str:
    return (f"<figure class='chart' id='{chart_id}'><figcaption>{escape(title)}</figcaption>"
            f"{legend}{svg}</figure>")


def _legend(*items: tuple[str, str]) -> str:
    return "<div class='legend'>" + "".join(
        f"<span class='swatch' style='background:{color}'></span>{escape(label)}"
        for color, label in items) + "</div>"


def _win_rates(card: Scorecard) -> tuple[float | None, float | None]:
    return (_f(card.win_rate_registered), _f(card.win_rate_unregistered))


def _deal_sizes(card: Scorecard) -> tuple[float | None, float | None]:
    return (_f(card.average_won), _f(card.peer_average_won))


def _f(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def _svg(width: int, height: int, body: str, label: str) -> str:
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
            f"viewBox='0 0 {width} {height}' role='img' aria-label='{escape(label)}'>"
            f"{body}</svg>")


def _empty(label: str) -> str:
    return _svg(540, 60, "<text x='10' y='35'>No data in this period</text>", label)


def _paired_bars(
    cards: Sequence[Scorecard], pick: Callable[[Scorecard], tuple[float | None, float | None]],
    *, percent_axis: bool, colors: tuple[str, str],
) -> str:
    pairs = [(c.distributor_id, pick(c)) for c in cards]
    scale_max = 1.0 if percent_axis else max(
        (v for _, pair in pairs for v in pair if v is not None), default=0.0)
    if not pairs or scale_max <= 0:
        return _empty("bar chart")
    left, width, row = 110, 360, 30
    height = 20 + row * len(pairs)
    parts = []
    for i, (name, pair) in enumerate(pairs):
        y = 10 + i * row
        parts.append(f"<text x='{left - 6}' y='{y + 15}' text-anchor='end'>"
                     f"{escape(name[:16])}</text>")
        for j, value in enumerate(pair):
            bar_y = y + 2 + j * 12
            if value is None:
                parts.append(f"<text x='{left + 4}' y='{bar_y + 10}'>n/a</text>")
                continue
            length = max(1.0, width * value / scale_max)
            label = f"{value * 100:.0f}%" if percent_axis else f"{value:,.0f}"
            parts.append(
                f"<rect x='{left}' y='{bar_y}' width='{length:.1f}' height='11' "
                f"fill='{colors[j]}'><title>{escape(name)}: {label}</title></rect>"
                f"<text x='{left + length + 4:.1f}' y='{bar_y + 10}'>{label}</text>")
    parts.append(f"<line x1='{left}' y1='6' x2='{left}' y2='{height - 6}' stroke='#6b7280'/>")
    return _svg(left + width + 70, height, "".join(parts), "bar chart")


def _histogram(cards: Sequence[Scorecard]) -> str:
    counts = [0] * BUCKETS
    for card in cards:
        for days in card.days_to_close:
            counts[min(BUCKETS - 1, max(0, days) // BUCKET_DAYS)] += 1
    peak = max(counts)
    if peak == 0:
        return _empty("histogram")
    left, bottom, plot_h, bar_w = 40, 200, 170, 36
    parts = [f"<line x1='{left}' y1='{bottom}' x2='{left + BUCKETS * bar_w}' y2='{bottom}' "
             "stroke='#6b7280'/>"]
    for i, count in enumerate(counts):
        h = plot_h * count / peak
        x = left + i * bar_w
        label = f"{i * BUCKET_DAYS}+" if i == BUCKETS - 1 else f"{i * BUCKET_DAYS}"
        parts.append(
            f"<rect x='{x + 3}' y='{bottom - h:.1f}' width='{bar_w - 6}' height='{h:.1f}' "
            f"fill='{HISTOGRAM}'><title>{label} days: {count}</title></rect>"
            f"<text x='{x + bar_w / 2}' y='{bottom + 14}' text-anchor='middle'>{label}</text>")
        if count:
            parts.append(f"<text x='{x + bar_w / 2}' y='{bottom - h - 4:.1f}' "
                         f"text-anchor='middle'>{count}</text>")
    return _svg(left + BUCKETS * bar_w + 20, bottom + 24, "".join(parts), "histogram")


def _busiest(cards: Sequence[Scorecard]) -> list[Scorecard]:
    ranked = sorted(cards, key=lambda c: (-max(c.active_by_month, default=0), c.distributor_id))
    return [c for c in ranked[:MAX_LINES] if any(c.active_by_month)]


def _lines(report: ScorecardReport) -> str:
    series = _busiest(report.scorecards)
    peak = max((max(c.active_by_month) for c in series), default=0)
    if not series or peak == 0:
        return _empty("line chart")
    left, top, plot_w, plot_h = 40, 10, 480, 180
    steps = max(1, len(report.months) - 1)
    parts = [f"<line x1='{left}' y1='{top + plot_h}' x2='{left + plot_w}' y2='{top + plot_h}' "
             f"stroke='#6b7280'/><line x1='{left}' y1='{top}' x2='{left}' y2='{top + plot_h}' "
             f"stroke='#6b7280'/><text x='{left - 6}' y='{top + 8}' text-anchor='end'>{peak}"
             f"</text><text x='{left - 6}' y='{top + plot_h}' text-anchor='end'>0</text>"]
    for i, month in enumerate(report.months):
        if i % 3 == 0 or i == len(report.months) - 1:
            x = left + plot_w * i / steps
            parts.append(f"<text x='{x:.1f}' y='{top + plot_h + 14}' text-anchor='middle'>"
                         f"{month.strftime('%b %y')}</text>")
    for n, card in enumerate(series):
        points = " ".join(
            f"{left + plot_w * i / steps:.1f},{top + plot_h - plot_h * v / peak:.1f}"
            for i, v in enumerate(card.active_by_month))
        parts.append(f"<polyline points='{points}' fill='none' stroke-width='3' "
                     f"stroke='{PALETTE[n % len(PALETTE)]}'><title>"
                     f"{escape(card.distributor_id)}</title></polyline>")
    return _svg(left + plot_w + 20, top + plot_h + 24, "".join(parts), "line chart")
