"""Markdown tables of bench/bench_protocol.py's figures (docs/benchmarks/protocol.md)."""

from __future__ import annotations

import json
import statistics
from typing import Any


def _med(values: list[float]) -> float:
    return statistics.median(values)


def _cell(v: list[float] | None) -> str:
    return f"{v[0]:.4f} [{v[1]:.4f}, {v[2]:.4f}]" if v else ""


def render(results: dict[str, Any]) -> str:
    lines = ["## PV4FAD protocol (version 2)", "",
             f"Machine: {results.get('machine')}; {results.get('date')}. Commands (one after "
             "the other, `B` = `.venv/bin/python bench/bench_protocol.py`): "
             + "; ".join(f"`B --parts {p}" + _flags(c) + "`"
                         for p, c in results.get("commands", {}).items()) + ".", ""]
    lines += _runs(results) + _curve(results) + _gap(results) + _training(results)
    lines += _labels(results)
    lines += _scale(results)
    return "\n".join(lines) + "\n"


def _flags(command: dict[str, Any]) -> str:
    out = []
    for name in ("scenarios", "reps", "plain_reps", "draws", "forest_draws"):
        if name in command:
            out.append(f" --{name.replace('_', '-')} {command[name]}")
    return "".join(out)


def _runs(results: dict[str, Any]) -> list[str]:
    runs, base = results.get("runs", {}), results.get("baseline")
    if not runs:
        return []
    lines = ["Full simulated runs on the default data (Flower simulation, CKKS, secure "
             "aggregation), training epsilon 1 (delta 1e-6), banks' answers at status "
             "epsilon 10; medians over n runs [min, max]"
             + (f"; centralized forest (all data in the clear) "
                f"{base['models']['centralized_rf']['auprc']:.4f}" if base else "") + ":", "",
             "| scenario | mode | n | AUPRC | PNS-only | wall s | bytes (all parties) | "
             "peak RSS MiB | privacy checks |", "|---|---|---|---|---|---|---|---|---|"]
    for key, reps in runs.items():
        scenario, mode = key.split("/")
        failed = sum(v for r in reps for v in r["privacy_checks"].values())
        auprc = [r["auprc"] for r in reps]
        lines.append(
            f"| {scenario} | {mode} | {len(reps)} | {_med(auprc):.4f} [{min(auprc):.4f}, "
            f"{max(auprc):.4f}] | {_med([r['auprc_pns_only'] for r in reps]):.4f} | "
            f"{_med([r['wall_s'] for r in reps]):.1f} | "
            f"{_med([r['bytes_total'] for r in reps]):,.0f} | "
            f"{_med([r['peak_rss_mib'] for r in reps]):.0f} | "
            f"{'pass' if not failed else f'{failed} flagged'} |")
    private = [r for k, reps in runs.items() if k.endswith("/private") for r in reps]
    if private:
        worst = max(private, key=lambda r: r["privacy"].get("per_account_epsilon") or 0)
        p = worst["privacy"]
        lines += ["", f"Privacy per account (bank accountants, largest over the runs): "
                  f"training epsilon {p['training_epsilon']:.3f}; the most-asked account "
                  f"was asked {p['questions_per_account_max']} distinct questions, so it "
                  f"loses at most epsilon {p['per_account_epsilon']:.2f} over its life, "
                  f"training included (the RDP composition of training and inference gives "
                  f"{p['per_account_epsilon_composed']:.2f}; the bound from the kept answers, "
                  f"{p['bound_against_any_deviation']:g}, holds whatever a party does)."]
    lines += ["", "Cost of privacy (private / plaintext, medians, same benchmark run):", "",
              "| scenario | wall time ratio | bytes ratio |", "|---|---|---|"]
    for key in runs:
        twin = key.replace("/private", "/plaintext", 1)
        if twin != key and twin in runs:
            p, q = runs[key], runs[twin]
            wall = _med([r["wall_s"] for r in p]) / _med([r["wall_s"] for r in q])
            nbytes = _med([r["bytes_total"] for r in p]) / _med([r["bytes_total"] for r in q])
            lines.append(f"| {key.split('/')[0]} | {wall:.2f} | {nbytes:.2f} |")
    lines += ["", "Bytes per test transaction and party (private runs, first repetition; "
              "both stages):", "", "| scenario | party | sent | received |",
              "|---|---|---|---|"]
    for key, reps in runs.items():
        if key.endswith("/private"):
            n = reps[0].get("test_rows") or 1
            for party, t in sorted(reps[0]["bytes"].items()):
                lines.append(f"| {key.split('/')[0]} | {party} | {t['sent'] / n:,.0f} | "
                             f"{t['received'] / n:,.0f} |")
    return lines


def _curve(results: dict[str, Any]) -> list[str]:
    c = results.get("curve")
    if not c:
        return []
    a = results["commands"].get("curve", {})
    lines = ["", "AUPRC against the banks' status epsilon (training epsilon 1; the same "
             "answers at training and at inference; offline: exact joint counts, the answers "
             f"and the Skellam noise drawn {a.get('draws')} times, the centralized forest "
             f"{a.get('forest_draws')} times; median [min, max]). PNS-only forest: "
             f"{c['pns_only']:.4f}.", "",
             "| status epsilon | protocol | centralized forest, same answers | difference |",
             "|---|---|---|---|"]
    for eps, proto in c["protocol"].items():
        central = c["centralized"].get(eps)
        diff = proto[0] - central[0] if central else None
        lines.append(f"| {eps} | {_cell(proto)} | {_cell(central)} | "
                     + (f"{diff:+.4f}" if diff is not None else "") + " |")
    return lines


def _gap(results: dict[str, Any]) -> list[str]:
    g = results.get("gap")
    if not g:
        return []
    lines = ["", "Where the gap comes from (`--parts gap`, offline as above, same answers per "
             "row): the protocol at training epsilon 1 against no training noise; and, "
             "without any status, the protocol's calibrated forest against a two-class "
             f"forest on the same PNS features: {g['pns_forest']:.4f} against "
             f"{g['two_class_forest']:.4f}.", "",
             "| status epsilon | training epsilon 1 | no training noise |", "|---|---|---|"]
    lines += [f"| {eps} | {_cell(v['training_epsilon_1'])} | {_cell(v['no_training_noise'])} |"
              for eps, v in g["status_epsilon"].items()]
    return lines


def _training(results: dict[str, Any]) -> list[str]:
    t = results.get("training")
    if not t:
        return []
    lines = ["", "AUPRC against the training epsilon (status epsilon 10, offline as above):",
             "", "| training epsilon | AUPRC |", "|---|---|"]
    lines += [f"| {eps} | {_cell(v)} |" for eps, v in t.items()]
    return lines


def _labels(results: dict[str, Any]) -> list[str]:
    lab = results.get("labels")
    if not lab:
        return []
    s, ll = lab["scores"], lab["labels"]

    def test_s(reps: list[dict[str, Any]]) -> float:
        return _med([sum(r["phase_s"].values()) for r in reps])

    lines = ["", f"Label-only inference (scenario01, the test stage of one trained default "
             f"run, training epsilon 1, status epsilon 10; {len(ll)} runs of each mode "
             "alternately, medians; wall times on a shared machine, compare them within "
             "the table):", "",
             "| mode | test-stage phases s | bytes (all parties) | precision | recall |",
             "|---|---|---|---|---|"]
    for name, reps in (("scores, then threshold 0.5", s), ("labels (CrypTen)", ll)):
        lines.append(f"| {name} | {test_s(reps):.1f} | "
                     f"{_med([r['bytes_total'] for r in reps]):,.0f} | "
                     f"{_med([r['precision'] for r in reps]):.4f} | "
                     f"{_med([r['recall'] for r in reps]):.4f} |")
    leak = lab["leak"]
    lines += ["", f"What label mode leaks: the flags. Of the {leak['rows']:,} bank-answered test "
              f"rows, {leak['revealing_share']:.2%} have a flag that depends on the bank's "
              "answer (there the flag reveals the answer, a randomized response); score mode "
              "reveals every answer. Label-mode bytes count CrypTen's traffic of the PNS and "
              f"the banks (both ways): {json.dumps(ll[0]['exchanged'])} in the first run."]
    return lines


def _scale(results: dict[str, Any]) -> list[str]:
    sc = results.get("scale")
    if not sc:
        return []
    p, q = sc["private"], sc.get("plain")
    lines = ["", "Challenge scale (3 M training, 1 M test transactions, 9 bank clients), one "
             "private and one plaintext run in the same benchmark run:", "",
             f"- private: AUPRC {p['auprc']:.4f} (PNS-only {p['auprc_pns_only']:.4f}); wall "
             f"{p['wall_s']:.0f} s; largest process peak RSS {p['peak_rss_mib']:.0f} MiB; "
             f"bytes {p['bytes_total']:,.0f}",
             f"- phases (s): {json.dumps(p['phase_s'])}",
             f"- failed parties: {json.dumps(p['failed'])}"]
    if q:
        lines.append(f"- plaintext: wall {q['wall_s']:.0f} s, bytes {q['bytes_total']:,.0f}; "
                     f"ratios private / plaintext: wall {p['wall_s'] / q['wall_s']:.2f}, "
                     f"bytes {p['bytes_total'] / q['bytes_total']:.2f}")
    return lines
