"""The privacy audit: signed ledgers, content checks that fail on mislabelled leaks, the
DP budget recomputed, the empirical attacks, and the CLI's exit codes. One tiny private
run is shared by the whole module."""

from __future__ import annotations

import json
import math
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from federation.audit_checks import parse_ckks
from federation.audit_run import audit
from federation.audit_verify import verify_files
from federation.cli import main
from federation.config import ProtocolConfig
from federation.errors import Pv4fadError
from federation.evidence import sha256
from federation.policy import PrivacyPolicy
from federation.simulate import simulate
from federation.transcript import (
    GENESIS,
    SIGNING_KEY_FILE,
    TranscriptLedger,
    canonical,
    line_hash,
    load_signing_key,
    merge_ledgers,
)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    from federation.data.generate import generate

    return generate(tmp_path_factory.mktemp("data") / "tiny", "tiny", 0)


@pytest.fixture(scope="module")
def run(tiny_data, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("audited") / "run"
    config = ProtocolConfig(epsilon=1.0, inference_epsilon=8.0, timeout_s=120.0)
    simulate(run_dir, data_root=tiny_data, scenario="scenario01", config=config)
    return run_dir


@pytest.fixture(scope="module")
def honest(run):
    return audit(run)


@pytest.fixture
def copy(run, tmp_path) -> Path:
    """A private copy of the run for one test to tamper with."""
    out = tmp_path / "run"
    shutil.copytree(run, out)
    return out


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def resign(run_dir: Path, rows: list[dict]) -> list[dict]:
    """Re-sign every chain with its party's own key, as a party whose (leaking) code wrote
    these records would have; the coordinator's anchors follow the new heads."""
    keys = {p.parent.name: load_signing_key(p, create=False)
            for p in run_dir.glob("*/*/" + SIGNING_KEY_FILE)}
    keys["coordinator"] = load_signing_key(run_dir / "coordinator" / SIGNING_KEY_FILE,
                                           create=False)
    new_hash: dict[tuple, str] = {}  # (recorder, run, seq) -> hash after re-signing
    for coordinator_pass in (False, True):
        prev: dict[tuple, str] = defaultdict(lambda: GENESIS)
        for row in rows:
            if (row["recorder"] == "coordinator") != coordinator_pass:
                continue
            head = row.get("details", {}).get("ledger_head", "")
            if coordinator_pass and head:
                seq, _, digest = head.partition(":")
                digest = new_hash.get((row["sender"], row["run"], int(seq)), digest)
                row["details"]["ledger_head"] = f"{seq}:{digest}"
            chain = row["chain"]
            chain["prev"] = prev[(row["recorder"], row["run"])]
            chain.pop("sig", None)
            chain["sig"] = keys[row["recorder"]].sign(canonical(row, with_sig=False)).hex()
            prev[(row["recorder"], row["run"])] = line_hash(row)
            new_hash[(row["recorder"], row["run"], chain["seq"])] = line_hash(row)
    return rows


def check(result: dict, name: str) -> dict:
    return next(c for c in result["check_details"] if c["name"] == name)


# -- honest run ---------------------------------------------------------------------------
def test_honest_run_passes_every_check_and_verifies(honest):
    assert honest["ledger"]["ok"], honest["ledger"]["problems"]
    assert all(c["key_pinned"] for c in honest["ledger"]["chains"])
    assert {c["recorder"] for c in honest["ledger"]["chains"]} == {
        "swift", "bank01", "bank02", "coordinator"}
    failed = [(c["name"], c["violations"][:2]) for c in honest["check_details"]
              if not c["passed"]]
    assert not failed
    assert honest["passed"], honest["failed"]
    # The content checks saw real content, not an empty ledger.
    assert "12 SEAL ciphertexts" in " ".join(
        check(honest, "ciphertext_fields_parse_as_ckks_ciphertexts")["evidence"])
    assert len(honest["flows"]) > 5 and all(f["bytes"] >= 0 for f in honest["flows"])
    assert not any(honest["checks"].values())


def test_epsilon_is_recomputed_from_mechanism_parameters(honest):
    releases = honest["dp"]["releases"]
    skellam = [r for r in releases if r["mechanism"] == "skellam"]
    rr = [r for r in releases if r["mechanism"] == "randomized_response"]
    assert len(skellam) == 3 and all(r["epsilon"] == pytest.approx(1.0, abs=1e-3)
                                     for r in skellam)
    # Randomized response: 8 per distinct question, the most-asked account has two.
    assert {r["epsilon"] for r in rr} <= {8.0, 16.0}
    per_account = honest["dp"]["per_account"]
    assert per_account["max"] == max(r["epsilon"] for r in rr)
    assert set(per_account["values"]) <= {8.0, 16.0}


def test_attacks_are_reported_beside_their_bounds(honest):
    attacks = {a["name"]: a for a in honest["attacks"]}
    status = attacks["status_attribute_inference"]
    # At epsilon 8 randomized response flips about 1 status in 3000: the PNS's view is
    # nearly exact, and the bound allows it.
    assert status["advantage"] > 0.9 and status["bound"] > 0.999
    assert status["within_bound"] is True
    table = attacks["noisy_table_membership"]
    assert table["within_bound"] is True
    assert 0 < table["tpr_at_fpr_0.001"] <= table["tpr_bound_at_fpr_0.001"] * 1.2
    assert table["advantage"] < table["bound"]
    model = attacks["pns_model_membership"]
    assert 0 <= model["auc"] <= 1 and model["bound"] is None


# -- the CLI --------------------------------------------------------------------------------
def test_cli_exit_codes_and_json(run, copy, capsys, tmp_path):
    assert main(["audit", "--out", str(run), "--json", "--no-attacks"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["passed"] and "attacks" not in out
    assert main(["audit", "verify", str(run)]) == 0
    capsys.readouterr()
    assert main(["audit", "--out", str(tmp_path / "missing")]) == 2
    assert "no run directory" in capsys.readouterr().err
    rows = lines(copy / "ledger.jsonl")
    rows[3]["nbytes"] += 1
    write(copy / "ledger.jsonl", rows)
    assert main(["audit", "verify", str(copy)]) == 1
    assert main(["audit", "--out", str(copy), "--no-attacks"]) == 1


def test_audit_names_the_run_directory_as_the_other_commands_do(run, capsys):
    """`--out RUN` as for simulate and sisa; the old positional `audit RUN` still works,
    with a warning; `audit verify --out RUN` verifies that run's ledgers."""
    assert main(["audit", "--out", str(run), "--json", "--no-attacks"]) == 0
    assert "warning" not in capsys.readouterr().err
    assert main(["audit", str(run), "--json", "--no-attacks"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["passed"]
    assert captured.err.startswith(f"pv4fad: warning: `pv4fad audit {run}` is now spelled "
                                   f"`pv4fad audit --out {run}`")
    assert main(["audit", "verify", "--out", str(run)]) == 0
    assert main(["audit", str(run), "--out", str(run)]) == 2
    assert "one run directory expected" in capsys.readouterr().err.splitlines()[-1]


# -- tamper-evident ledger ---------------------------------------------------------------
def _party_lines(rows: list[dict], party: str) -> list[int]:
    return [i for i, r in enumerate(rows) if r["recorder"] == party]


def _problems(path: Path, run_dir: Path) -> list[str]:
    keys = json.loads((run_dir / "parties" / "ledger_keys.json").read_text())
    report = verify_files([path], keys)
    assert not report.ok
    return report.all_problems()


def test_verify_names_an_edited_line(copy):
    path = copy / "ledger.jsonl"
    rows = lines(path)
    i = _party_lines(rows, "bank01")[2]
    rows[i]["nbytes"] = 1
    write(path, rows)
    problems = _problems(path, copy)
    assert any(p.startswith(f"{path}:{i + 1} ") and "signature" in p for p in problems)


def test_verify_names_a_reordered_line(copy):
    path = copy / "ledger.jsonl"
    rows = lines(path)
    a, b = _party_lines(rows, "swift")[1:3]
    rows[a], rows[b] = rows[b], rows[a]
    write(path, rows)
    problems = _problems(path, copy)
    assert any(f"{path}:{b + 1} " in p and "reordered" in p for p in problems)


def test_verify_names_a_removed_line(copy):
    path = copy / "ledger.jsonl"
    rows = lines(path)
    i, after = _party_lines(rows, "bank02")[3:5]
    del rows[i]
    write(path, rows)
    problems = _problems(path, copy)
    assert any(f"{path}:{after} " in p and "missing" in p and "removed" in p
               for p in problems)


def test_verify_detects_removed_last_lines_by_the_coordinators_anchor(copy):
    path = copy / "parties" / "bank01" / "ledger.jsonl"
    rows = lines(path)
    last_run = rows[-1]["run"]
    mine = [i for i, r in enumerate(rows) if r["run"] == last_run]
    write(path, [r for i, r in enumerate(rows) if i not in mine[-2:]])
    report = verify_files([path, copy / "coordinator" / "ledger.jsonl"])
    assert any("ledger head" in p and "missing" in p for p in report.all_problems())


def test_verify_names_appended_and_duplicated_lines(copy):
    path = copy / "ledger.jsonl"
    rows = lines(path)
    forged = json.loads(json.dumps(rows[_party_lines(rows, "bank01")[-1]]))
    forged["chain"]["seq"] += 1
    forged["details"] = {"note": "added later"}
    dup = rows[_party_lines(rows, "swift")[0]]
    write(path, [*rows, forged, dup])
    problems = _problems(path, copy)
    assert any(f"{path}:{len(rows) + 1} " in p and "signature" in p for p in problems)
    assert any(f"{path}:{len(rows) + 2} " in p and "duplicated" in p for p in problems)


def test_merged_ledgers_keep_every_chain_verifiable(copy, tmp_path):
    files = sorted(copy.glob("parties/*/ledger.jsonl")) + [copy / "coordinator" / "ledger.jsonl"]
    merged = merge_ledgers(files, tmp_path / "merged.jsonl")
    keys = json.loads((copy / "parties" / "ledger_keys.json").read_text())
    report = verify_files([tmp_path / "merged.jsonl"], keys)
    assert report.ok, report.all_problems()
    assert sum(c.lines for c in report.chains) == len(merged)
    # A key other than the pinned one is refused even when the chain is self-consistent.
    other = {**keys, "bank01": keys["bank02"]}
    assert not verify_files([tmp_path / "merged.jsonl"], other).ok


def test_in_memory_ledger_signs_too(tmp_path):
    key = load_signing_key(tmp_path / "k")
    ledger = TranscriptLedger("p", "r", tmp_path / "l.jsonl", signer=key)
    for i in range(3):
        ledger.record(direction="sent", round=0, phase="x", sender="p", receiver="q",
                      message_type="t.x", nbytes=i, fields={"a": "public"})
    assert ledger.head().startswith("2:")
    assert verify_files([tmp_path / "l.jsonl"]).ok


# -- injected leaks: a mislabelling implementation signs its own (truthful) records ---------
def _noise_entries(rows: list[dict], bank: str) -> list[dict]:
    return [r for r in rows if r["message_type"] == "train.noise" and r["sender"] == bank
            and r["receiver"] == "swift" and r["direction"] in ("sent", "received")]


def test_plaintext_labelled_ciphertext_fails_the_audit(copy):
    path = copy / "ledger.jsonl"
    rows = lines(path)
    plain = np.arange(64, dtype=np.int64).tobytes()  # the counts, in the clear
    digest = sha256(plain)
    (copy / "parties" / "swift" / "evidence" / digest).write_bytes(plain)
    for r in _noise_entries(rows, "bank01"):
        assert r["fields"]["counts"] == "ciphertext"  # the label stays
        r["details"]["field_evidence"]["counts"] = {
            "kind": "array", "dtype": "<i8", "shape": [64], "nbytes": len(plain),
            "sha256": digest}
    write(path, resign(copy, rows))
    result = audit(copy, attacks=False)
    assert result["ledger"]["ok"], result["ledger"]["problems"]
    # The label-based checks still pass; the content check does not.
    assert check(result, "no_plaintext_crosses_a_boundary")["passed"]
    assert check(result, "pns_receives_only_protected_bank_values")["passed"]
    bad = check(result, "ciphertext_fields_parse_as_ckks_ciphertexts")
    assert not bad["passed"] and "bank01->swift field 'counts'" in bad["violations"][0]
    assert not result["passed"]


def test_unsealed_payload_fails_the_audit(copy):
    path = copy / "ledger.jsonl"
    rows = lines(path)
    for r in _noise_entries(rows, "bank02"):
        r["details"]["blob_sha256"] = r["details"]["payload_sha256"]
        if "sealed" in r["details"]:
            r["details"]["sealed"] = None
    write(path, resign(copy, rows))
    result = audit(copy, attacks=False)
    bad = check(result, "sealed_payloads_are_aead_blobs_for_the_recipient")
    assert not bad["passed"] and "not sealed" in bad["violations"][0]
    assert not result["passed"]


def test_release_above_the_banks_own_policy_fails_the_audit(copy):
    policy_path = copy / "parties" / "bank01" / "policy.json"
    policy = json.loads(policy_path.read_text())
    policy["status_epsilon"] = 4.0  # the bank's policy; its code answered at 8 anyway
    policy_path.write_text(json.dumps(policy))
    PrivacyPolicy.load(policy_path)
    result = audit(copy, attacks=False)
    bad = check(result, "releases_within_each_banks_policy")
    assert not bad["passed"] and any("bank01" in v and "allows 4" in v
                                     for v in bad["violations"])
    assert check(result, "releases_within_reference_policy")["passed"]
    assert not result["passed"]


def test_release_above_a_reference_policy_fails_the_audit(run, tmp_path):
    PrivacyPolicy(status_epsilon=4.0, lifetime_account_epsilon=8.0).save(tmp_path / "ref.json")
    result = audit(run, reference=tmp_path / "ref.json", attacks=False)
    bad = check(result, "releases_within_reference_policy")
    assert not bad["passed"] and any("allows 4" in v for v in bad["violations"])
    assert main(["audit", "--out", str(run), "--policy", str(tmp_path / "ref.json"),
                 "--no-attacks"]) == 1


def test_forged_skellam_accountant_entry_fails_the_audit(copy):
    path = copy / "ledger.jsonl"
    rows = lines(path)
    for r in rows:
        if r["direction"] == "release" and r["recorder"] == "bank02" and \
                r["details"]["mechanism"] == "skellam":
            r["details"]["noise_scale"] *= 100  # claims far more noise than it added
    write(path, resign(copy, rows))
    result = audit(copy, attacks=False)
    assert result["ledger"]["ok"]
    bad = check(result, "accountant_entries_match_what_was_sent")
    assert not bad["passed"] and any("bank02" in v and "the bank sent variance" in v
                                     for v in bad["violations"])


def test_forged_status_accountant_entry_fails_the_audit_and_the_attack(copy):
    path = copy / "ledger.jsonl"
    rows = lines(path)
    for r in rows:
        if r["direction"] == "release" and r["recorder"] == "bank01" and \
                r["details"]["mechanism"] == "randomized_response":
            r["details"]["noise_scale"] = 0.5  # claims strong noise; answered at 8
    write(path, resign(copy, rows))
    result = audit(copy)
    bad = check(result, "accountant_entries_match_what_was_sent")
    assert not bad["passed"] and any("bank01" in v for v in bad["violations"])
    # The attack measures what the PNS actually learnt, far above what epsilon 0.5 (or 1
    # for an account asked twice) allows.
    status = next(a for a in result["attacks"] if a["name"] == "status_attribute_inference")
    assert status["within_bound"] is False
    assert "attack:status_attribute_inference" in result["failed"]


def test_ckks_parser_accepts_ciphertexts_and_refuses_other_bytes(run):
    from crypto.ckks_keys import PublicContext
    from federation.evidence import EvidenceStore

    store = EvidenceStore.of_run(run)
    rows = lines(run / "ledger.jsonl")
    linkage = next(r for r in rows if r["message_type"] == "train.linkage"
                   and r["direction"] == "received" and r["recorder"] == "bank01")
    ev = linkage["details"]["field_evidence"]
    context = PublicContext.from_bytes(store.get(ev["pns_public"]["sha256"]))
    groups = store.get(ev["groups"]["sha256"])
    assert parse_ckks(groups, context) >= 1
    with pytest.raises(Pv4fadError):
        parse_ckks(b"\0" * 4096, context)
    with pytest.raises(Pv4fadError):  # a real ciphertext frame with one byte flipped
        broken = bytearray(groups)
        broken[len(broken) // 2] ^= 0xFF
        parse_ckks(bytes(broken), context)


# -- the report ---------------------------------------------------------------------------
def test_json_and_html_carry_the_same_content(run, tmp_path, capsys):
    html_path = tmp_path / "report.html"
    assert main(["audit", "--out", str(run), "--html", str(html_path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    page = html_path.read_text()
    for c in result["check_details"]:
        assert c["title"].replace("'", "&#x27;") in page
    for a in result["attacks"]:
        assert a["summary"] in page
    for r in result["dp"]["releases"]:
        assert r["released"] in page
    # Self-contained: nothing to fetch when it is opened.
    assert "<script" not in page and " src=" not in page and "href=" not in page
    assert "@import" not in page and "url(" not in page


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _chromium(*args: str, timeout: float = 90.0) -> tuple[str, str]:
    import subprocess

    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--enable-logging=stderr", "--v=0", "--window-size=1200,4000", *args],
        capture_output=True, text=True, timeout=timeout, check=False)
    return proc.stdout, proc.stderr


def _console_errors(stderr: str) -> list[str]:
    """Chromium logs each console message as CONSOLE(...) in its own log; errors of the
    page (uncaught exceptions, failed loads) show there too."""
    return [line for line in stderr.splitlines()
            if "CONSOLE" in line or "Uncaught" in line or "net::ERR" in line]


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (`make chromium` "
                                             "installs it; `make test-slow` runs this test)")
def test_report_renders_in_headless_chromium(honest, tmp_path):
    from PIL import Image

    from federation.audit_report import write_html

    html_path = tmp_path / "report.html"
    write_html(honest, html_path)
    shot = tmp_path / "report.png"  # kept under the test's temporary directory
    _, err = _chromium(f"--screenshot={shot}", html_path.as_uri())
    assert not _console_errors(err), _console_errors(err)
    dom, err = _chromium("--dump-dom", html_path.as_uri())
    assert not _console_errors(err)
    # Every chart is in the rendered DOM and has drawn content.
    charts = dom.count('class="chart"')
    assert charts >= 5
    assert dom.count('class="bar"') >= 10 and dom.count('class="curve"') >= 3
    assert 'class="bound"' in dom
    image = Image.open(shot).convert("L")
    assert image.size == (1200, 4000)
    # Not a blank page: a real spread of grey levels, and coloured bars in the charts.
    hist = image.histogram()
    assert sum(1 for h in hist if h) > 50
    rgb = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(int)
    green = np.abs(rgb - [0x2c, 0xa0, 0x2c]).sum(axis=1) < 30  # the passing checks' bars
    blue = np.abs(rgb - [0x1f, 0x77, 0xb4]).sum(axis=1) < 30  # traffic bars and curves
    assert green.sum() > 500 and blue.sum() > 500
    # The detector is not blind: a page that logs an error is caught.
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>console.error('audit-report-test')</script>"
                   "</body></html>")
    _, err = _chromium("--dump-dom", bad.as_uri())
    assert any("audit-report-test" in line for line in _console_errors(err))


# -- LLM runs: privleak ---------------------------------------------------------------------
def test_privleak_follows_open_unlearnings_convention(tmp_path):
    from federation.audit_attacks import privleak

    # The model still tells its forget set apart perfectly (AUC 1, AUC' 0); the retain-only
    # model cannot (AUC 0.5): privleak -100 %.
    out = privleak([3, 4, 5], [0, 1, 2], [0, 2, 4], [1, 2, 3])
    assert out["auc_model"] == 1.0 and out["auc_retain"] == pytest.approx(0.5)
    assert out["privleak"] == pytest.approx(-100.0)
    # A model less able than the retain-only one to tell them apart: positive privleak.
    over = privleak([0, 1, 2], [3, 4, 5], [0, 2, 4], [1, 2, 3])
    assert over["privleak"] == pytest.approx((1.0 - 0.5) / 0.5 * 100)
    same = privleak([1, 2, 3], [0, 2, 5], [1, 2, 3], [0, 2, 5])
    assert same["privleak"] == 0.0
    # An LLM evaluation directory with only the scores is audited for them.
    (tmp_path / "mia_scores.json").write_text(json.dumps({
        "model": {"forget": [3, 4, 5], "holdout": [0, 1, 2]},
        "retain_model": {"forget": [0, 1, 2, 3], "holdout": [0, 1, 2, 3]}}))
    result = audit(tmp_path)
    llm = next(a for a in result["attacks"] if a["name"] == "llm_forget_membership")
    assert llm["privleak"] == pytest.approx(-100.0)
    (tmp_path / "mia_scores.json").write_text("{}")
    with pytest.raises(Exception, match="mia_scores.json"):
        audit(tmp_path)


@pytest.mark.slow
def test_a_run_at_a_high_status_epsilon_fails_the_audit(tiny_data, tmp_path):
    """The motivating case: statuses nearly exact (at 50 one answer in e^50 is flipped).
    The simulated banks' policies were written to allow it, so only the reference policy
    (the protocol's defaults) stops it."""
    run_dir = tmp_path / "run"
    config = ProtocolConfig(epsilon=1.0, inference_epsilon=50.0, timeout_s=600.0)
    simulate(run_dir, data_root=tiny_data, scenario="scenario01", config=config)
    result = audit(run_dir)
    assert result["ledger"]["ok"]
    assert check(result, "releases_within_each_banks_policy")["passed"]
    assert check(result, "noised_statuses_have_a_release")["passed"]
    bad = check(result, "releases_within_reference_policy")
    assert not bad["passed"] and any("statuses at epsilon 50" in v for v in bad["violations"])
    assert main(["audit", "--out", str(run_dir), "--no-attacks"]) == 1


def test_statuses_a_bank_did_not_answer_need_no_release(run):
    """A bank whose per-account budget is spent answers -1 and records no release: that is
    not a leak. An answered status without a release is."""
    from federation.audit_checks import (
        RunContext,
        check_noised,
        received_statuses,
    )
    from federation.audit_run import _read
    from federation.evidence import EvidenceStore

    store = EvidenceStore.of_run(run)
    entries = [e for e in _read([run / "ledger.jsonl"])
               if not (e.direction == "release"
                       and e.details.get("mechanism") == "randomized_response")]
    statuses = {e.details["field_evidence"]["status"]["sha256"]:
                e.details["field_evidence"]["status"]["dtype"]
                for e, _ in received_statuses(entries, store)}
    assert statuses

    class Unanswered(EvidenceStore):
        def get(self, digest):
            data = super().get(digest)
            if digest not in statuses or data is None:
                return data
            return np.full(len(np.frombuffer(data, statuses[digest])), -1,
                           statuses[digest]).tobytes()

    def noised(s):
        return check_noised(entries, RunContext(store=s, policies={},
                                                reference=PrivacyPolicy()))

    answered = noised(store)
    assert not answered.passed and any("no randomized-response release" in v
                                       for v in answered.violations)
    assert noised(Unanswered(store.roots)).passed


def test_a_status_epsilon_above_the_lifetime_budget_is_refused():
    with pytest.raises(Pv4fadError, match="status_epsilon 50 is above lifetime_account_"
                                          "epsilon 30"):
        PrivacyPolicy(status_epsilon=50.0)
    assert PrivacyPolicy(status_epsilon=50.0, lifetime_account_epsilon=150.0)


def test_dp_bounds_and_the_envelope_test():
    from federation.audit_attacks import _under_envelope, advantage_bound, auc_bound

    assert advantage_bound(0.0) == 0.0 and auc_bound(0.0) == pytest.approx(0.5, abs=1e-4)
    assert auc_bound(50.0) == pytest.approx(1.0, abs=1e-4)
    eps = 1.0
    p = math.exp(eps) / (1 + math.exp(eps))  # binary randomized response meets the bound
    assert advantage_bound(eps) == pytest.approx(2 * p - 1)
    n = 20000
    fpr, tpr = np.array([0.0, 1 - p, 1.0]), np.array([0.0, p, 1.0])
    assert _under_envelope(fpr, tpr, eps, 0.0, n, n)
    # The same attack claimed at a smaller epsilon is significantly above its bound.
    assert not _under_envelope(fpr, tpr, 0.5, 0.0, n, n)
    # A small sample that happens to beat the bound is not enough to fail.
    assert _under_envelope(np.array([0.0, 0.2, 1.0]), np.array([0.0, 0.8, 1.0]), eps, 0.0,
                           10, 10)
