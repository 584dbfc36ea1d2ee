"""The audit as one self-contained HTML page for a privacy officer: inline CSS and SVG
charts, no script and nothing fetched at view time. Its content is the audit's result
object (the same one `--json` prints)."""

from __future__ import annotations

import html
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from federation.audit_attacks import roc_envelope

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:1100px;color:#222;line-height:1.45;padding:0 1rem}
h1{margin-bottom:.2rem}h2{border-bottom:2px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0;font-size:.9rem}
th,td{border:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:#1a7f37;font-weight:600}.fail{color:#cf222e;font-weight:600}
.na{color:#666}.banner{padding:.8rem 1rem;border-radius:6px;font-size:1.2rem;margin:1rem 0}
.banner.pass{background:#dafbe1}.banner.fail{background:#ffebe9}
.small{font-size:.85rem;color:#555}ul.v{margin:.2rem 0;padding-left:1.2rem;color:#cf222e}
svg{background:#fff;border:1px solid #eee;margin:.5rem 0}
.charts{display:flex;flex-wrap:wrap;gap:1rem}
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _fmt(value: Any, digits: int = 4) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:.{digits}g}"
    if isinstance(value, int):
        return f"{value:,}"
    return _e(value)


def _status(ok: bool | None) -> str:
    if ok is None:
        return '<span class="na">no bound</span>'
    return '<span class="pass">PASS</span>' if ok else '<span class="fail">FAIL</span>'


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: set[int] = frozenset()
           ) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else
                                    f"<td>{c}</td>" for i, c in enumerate(r)) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# -- charts ----------------------------------------------------------------------------------
def bar_chart(labels: Sequence[str], values: Sequence[float], title: str, unit: str = "",
              log: bool = False, colors: Sequence[str] | None = None, width: int = 1000,
              texts: Sequence[str] | None = None) -> str:
    """Horizontal bars, one per label."""
    n = len(labels)
    row, left, top = 22, 330, 30
    height = top + n * row + 30
    vmax = max([v for v in values if v > 0] or [1.0])

    def scale(v: float) -> float:
        if v <= 0:
            return 0.0
        if log:
            return (math.log10(v) + 1) / (math.log10(vmax) + 1) if vmax > 0.1 else 1.0
        return v / vmax

    parts = [f'<svg class="chart" role="img" aria-label="{_e(title)}" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" '
             'xmlns="http://www.w3.org/2000/svg">',
             f'<text x="10" y="18" font-size="14" font-weight="600">{_e(title)}</text>']
    span = width - left - 120
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = top + i * row
        w = max(1.0, span * scale(value)) if value > 0 else 0.0
        color = (colors[i] if colors else PALETTE[0])
        parts.append(f'<text x="{left - 6}" y="{y + 14}" font-size="11" '
                     f'text-anchor="end">{_e(label)}</text>')
        parts.append(f'<rect class="bar" x="{left}" y="{y + 3}" width="{w:.1f}" height="15" '
                     f'fill="{color}"><title>{_e(label)}: {_fmt(value)} {_e(unit)}</title>'
                     '</rect>')
        text = _e(texts[i]) if texts else f"{_fmt(value)} {_e(unit)}"
        parts.append(f'<text x="{left + w + 5:.1f}" y="{y + 14}" font-size="11">{text}</text>')
    parts.append("</svg>")
    return "".join(parts)


def histogram(values: Sequence[float], title: str, xlabel: str, width: int = 480,
              height: int = 260) -> str:
    counts: dict[float, int] = defaultdict(int)
    for v in values:
        counts[round(float(v), 6)] += 1
    keys = sorted(counts)
    left, bottom, top = 50, height - 40, 48
    cmax = max(counts.values()) if counts else 1
    bw = (width - left - 20) / max(len(keys), 1)
    parts = [f'<svg class="chart" role="img" aria-label="{_e(title)}" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" '
             'xmlns="http://www.w3.org/2000/svg">',
             f'<text x="10" y="18" font-size="14" font-weight="600">{_e(title)}</text>',
             f'<line x1="{left}" y1="{bottom}" x2="{width - 10}" y2="{bottom}" stroke="#888"/>']
    for i, k in enumerate(keys):
        h = (bottom - top) * counts[k] / cmax
        x = left + i * bw
        parts.append(f'<rect class="bar" x="{x + 4:.1f}" y="{bottom - h:.1f}" '
                     f'width="{max(bw - 8, 2):.1f}" height="{max(h, 1):.1f}" fill="{PALETTE[2]}">'
                     f'<title>epsilon {k:g}: {counts[k]} accounts</title></rect>')
        parts.append(f'<text x="{x + bw / 2:.1f}" y="{bottom + 14}" font-size="11" '
                     f'text-anchor="middle">{k:g}</text>')
        parts.append(f'<text x="{x + bw / 2:.1f}" y="{bottom - h - 4:.1f}" font-size="11" '
                     f'text-anchor="middle">{counts[k]}</text>')
    parts.append(f'<text x="{width / 2}" y="{height - 8}" font-size="12" '
                 f'text-anchor="middle">{_e(xlabel)}</text></svg>')
    return "".join(parts)


def roc_chart(attack: dict[str, Any], size: int = 320) -> str:
    """The attack's ROC curve on log-FPR axes (where low-FPR behaviour shows) with the DP
    envelope of its accounted epsilon."""
    curve = attack["curve"]
    pad, inner = 45, size - 60
    lo = 1e-4

    def x(f: float) -> float:
        return pad + inner * (math.log10(max(f, lo)) - math.log10(lo)) / -math.log10(lo)

    def y(t: float) -> float:
        return 20 + inner * (1 - t)

    pts = " ".join(f"{x(f):.1f},{y(t):.1f}" for f, t in zip(curve["fpr"], curve["tpr"],
                                                              strict=True) if f >= lo)
    parts = [f'<svg class="chart" role="img" aria-label="ROC {_e(attack["title"])}" '
             f'width="{size}" height="{size + 10}" viewBox="0 0 {size} {size + 10}" '
             'xmlns="http://www.w3.org/2000/svg">',
             f'<rect x="{pad}" y="20" width="{inner}" height="{inner}" fill="none" '
             'stroke="#888"/>']
    for f in (1e-4, 1e-3, 1e-2, 1e-1, 1.0):
        parts.append(f'<text x="{x(f):.1f}" y="{size - 22}" font-size="10" '
                     f'text-anchor="middle">{f:g}</text>')
    for t in (0, 0.5, 1):
        parts.append(f'<text x="{pad - 4}" y="{y(t) + 4:.1f}" font-size="10" '
                     f'text-anchor="end">{t:g}</text>')
    parts.append(f'<text x="{pad + inner / 2}" y="{size - 6}" font-size="11" '
                 'text-anchor="middle">false positive rate (log)</text>')
    diag = " ".join(f"{x(f):.1f},{y(f):.1f}" for f in (10 ** (k / 20) for k in range(-80, 1)))
    parts.append(f'<polyline points="{diag}" fill="none" stroke="#bbb" '
                 'stroke-dasharray="3,3"/>')
    if attack.get("epsilon") is not None and attack.get("bound") is not None:
        grid = [10 ** (k / 40) for k in range(-160, 1)]
        env = roc_envelope(__import__("numpy").asarray(grid), float(attack["epsilon"]),
                           float(attack.get("delta", 0.0) or 0.0))
        env_pts = " ".join(f"{x(f):.1f},{y(float(t)):.1f}" for f, t in zip(grid, env,
                                                                          strict=True))
        parts.append(f'<polyline class="bound" points="{env_pts}" fill="none" '
                     f'stroke="{PALETTE[3]}" stroke-width="2" stroke-dasharray="6,3"/>')
    parts.append(f'<polyline class="curve" points="{pts}" fill="none" stroke="{PALETTE[0]}" '
                 'stroke-width="2"/>')
    parts.append(f'<text x="{pad + 6}" y="34" font-size="11" fill="{PALETTE[0]}">attack</text>')
    if attack.get("bound") is not None:
        parts.append(f'<text x="{pad + 6}" y="48" font-size="11" fill="{PALETTE[3]}">'
                     'DP bound</text>')
    parts.append("</svg>")
    return "".join(parts)


# -- page ------------------------------------------------------------------------------------
def render_html(result: dict[str, Any]) -> str:
    ok = result["passed"]
    src = result["source"]
    out = ["<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
           "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">",
           f"<title>pv4fad privacy audit: {'PASS' if ok else 'FAIL'}</title>",
           f"<style>{CSS}</style></head><body>",
           "<h1>Privacy audit</h1>",
           f'<p class="small">{_e(src.get("run_dir") or ", ".join(src["ledgers"]))}'
           f'{" · scenario " + _e(src["scenario"]) if src.get("scenario") else ""}'
           f' · reference policy: {_e(src["reference_policy"])} · audit took '
           f'{result["seconds"]:.1f} s</p>',
           f'<div class="banner {"pass" if ok else "fail"}">'
           f'{"Every check passed" if ok else "Failed: " + _e(", ".join(result["failed"]))}'
           "</div>"]
    out.append(_section_overview(result))
    out.append(_section_parties(result))
    out.append(_section_traffic(result))
    out.append(_section_checks(result))
    out.append(_section_dp(result))
    if result.get("attacks"):
        out.append(_section_attacks(result))
    out.append(_section_ledger(result))
    out.append('<p class="small">Generated by <code>pv4fad audit --html</code>; the same '
               "content is printed by <code>--json</code>. How to read this report: "
               "docs/audit.md.</p></body></html>")
    return "\n".join(out)


def _section_overview(result: dict[str, Any]) -> str:
    checks = result["check_details"]
    n_pass = sum(c["passed"] for c in checks)
    colors = [PALETTE[2] if c["passed"] else PALETTE[3] for c in checks]
    chart = bar_chart([c["name"].replace("_", " ")[:48] for c in checks],
                      [1.0 for _ in checks], f"Checks: {n_pass} of {len(checks)} pass",
                      colors=colors, width=760,
                      texts=["pass" if c["passed"] else f"FAIL ({len(c['violations'])})"
                             for c in checks])
    return f"<h2>Summary</h2>{chart}"


def _section_parties(result: dict[str, Any]) -> str:
    rows = [[_e(p["party"]), _e(p["role"]),
             _e("; ".join(f"{k}: {v}" for k, v in p.get("data", {}).items()) or "not given"),
             _fmt(p["ledger_lines"]), _fmt(p["bytes_sent"]), _fmt(p["bytes_received"])]
            for p in result["parties"]]
    return "<h2>Parties and data</h2>" + _table(
        ["party", "role", "data", "ledger lines", "bytes sent", "bytes received"], rows,
        {3, 4, 5})


def _section_traffic(result: dict[str, Any]) -> str:
    flows = result["flows"]
    labels = [f"{f['stage']}.{f['phase']} {f['sender']} → {f['receiver']}" for f in flows]
    senders = sorted({f["sender"] for f in flows})
    colors = [PALETTE[senders.index(f["sender"]) % len(PALETTE)] for f in flows]
    chart = bar_chart(labels, [float(f["bytes"]) for f in flows],
                      "Bytes sent per phase and boundary (log scale; colour = sender)",
                      unit="B", log=True, colors=colors)
    rows = [[_e(f["stage"]), _e(f["phase"]), _e(f["sender"]), _e(f["receiver"]),
             _fmt(f["messages"]), _fmt(f["bytes"])] for f in flows]
    return ("<h2>Who sent what to whom</h2>" + chart
            + _table(["stage", "phase", "from", "to", "messages", "bytes"], rows, {4, 5}))


def _section_checks(result: dict[str, Any]) -> str:
    rows = []
    for c in result["check_details"]:
        violations = "".join(f"<li>{_e(v)}</li>" for v in c["violations"][:20])
        more = len(c["violations"]) - 20
        rows.append([_status(c["passed"]), _e(c["title"]),
                     _e("; ".join(c["evidence"]))
                     + (f'<ul class="v">{violations}</ul>' if violations else "")
                     + (f"<p>… {more} more</p>" if more > 0 else "")])
    return "<h2>Automated checks</h2>" + _table(["result", "check", "evidence"], rows)


def _section_dp(result: dict[str, Any]) -> str:
    dp = result["dp"]
    rel = dp["releases"]
    rows = [[_e(r["party"]), _e(r["phase"]), _e(r["mechanism"]), _fmt(r["noise_scale"]),
             _fmt(r["sensitivity"]), _fmt(r["count"]), _fmt(r["epsilon"]),
             _fmt(r["delta"]) if r["delta"] else "0 (pure)", _e(r["released"])]
            for r in rel]
    chart = bar_chart([f"{r['party']} {r['phase']} ({r['mechanism']})" for r in rel],
                      [float(r["epsilon"]) if not math.isnan(r["epsilon"]) else 0.0
                       for r in rel], "Epsilon per release, recomputed", width=900)
    parts = ["<h2>Differential-privacy budget</h2>",
             "<p>Each release's epsilon is recomputed here from its mechanism and "
             f"parameters (delta {dp['delta']:g} for Skellam releases).</p>", chart,
             _table(["party", "phase", "mechanism", "noise scale", "sensitivity", "count",
                     "epsilon", "delta", "released"], rows, {3, 4, 5, 6})]
    composed = dp["composed_training_epsilon"]
    if composed:
        parts.append("<p>Training releases composed per party: "
                     + ", ".join(f"{_e(p)} {v:.4g}" for p, v in composed.items()) + "</p>")
    acc = dp["per_account"]
    if acc["values"]:
        parts.append(histogram(acc["values"], "Per-account epsilon at inference",
                               "epsilon of an account (its distinct questions × status "
                               "epsilon)"))
        rows = [[_e(b), _fmt(v["accounts"]), _fmt(v["median"]), _fmt(v["max"])]
                for b, v in acc["per_bank"].items()]
        parts.append(f"<p>Worst account: epsilon {acc['max']:g}.</p>"
                     + _table(["bank", "accounts asked", "median epsilon", "worst epsilon"],
                              rows, {1, 2, 3}))
    return "".join(parts)


def _section_attacks(result: dict[str, Any]) -> str:
    parts = ["<h2>Empirical attacks against their bounds</h2>",
             "<p>Each curve is what an attacker achieved; the dashed red curve is the most any "
             "attacker could achieve under the accounted epsilon. A curve significantly above "
             "its bound fails the audit.</p>"]
    rows, charts = [], []
    for a in result["attacks"]:
        rows.append([_e(a["title"]), _status(a.get("within_bound")), _e(a["summary"]),
                     _fmt(a.get("auc")) if a.get("auc") is not None else "",
                     _fmt(a.get("auc_bound")) if a.get("auc_bound") is not None else "",
                     _fmt(a.get("advantage")) if a.get("advantage") is not None else "",
                     _fmt(a.get("bound")) if a.get("bound") is not None else ""])
        if "curve" in a:
            charts.append(f"<div><div class=\"small\">{_e(a['title'])}</div>"
                          f"{roc_chart(a)}</div>")
    parts.append(_table(["attack", "within bound", "result", "AUC", "AUC bound", "advantage",
                         "advantage bound"], rows, {3, 4, 5, 6}))
    parts.append('<div class="charts">' + "".join(charts) + "</div>")
    return "".join(parts)


def _section_ledger(result: dict[str, Any]) -> str:
    ledger = result["ledger"]
    rows = [[_e(c["recorder"]), _e(c["run"]), _fmt(c["lines"]),
             "pinned" if c["key_pinned"] else '<span class="fail">not pinned</span>',
             _e(c["key"][:16] + "…"), _status(c["ok"])] for c in ledger["chains"]]
    problems = "".join(f"<li>{_e(p)}</li>" for p in ledger["problems"][:50])
    problems += "".join(f"<li>{_e(w)}</li>" for w in ledger.get("warnings", []))
    return ("<h2>Signed ledgers</h2><p>Each party's ledger is a hash chain signed line by "
            "line with its own Ed25519 key.</p>"
            + _table(["party", "run", "lines", "key", "key id", "signatures and chain"], rows,
                     {2})
            + (f'<ul class="v">{problems}</ul>' if problems else ""))


def write_html(result: dict[str, Any], path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(result), encoding="utf-8")
