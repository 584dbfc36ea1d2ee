"""Operator experience of `pv4fad`: exit codes, one line per failure, run directories that
an interruption or a mismatched test stage cannot corrupt, Ctrl-C, lazy help."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from federation.cli import main

TIMEOUT = "120"


def _cli(*args: str, timeout: float = 300) -> tuple[int, str, str]:
    proc = subprocess.run([sys.executable, "-m", "federation.cli", *args],
                          capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


def _last(err: str) -> str:
    return err.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    from federation.data.generate import generate

    return generate(tmp_path_factory.mktemp("data") / "tiny", "tiny", 0)


# stderr of the `trained` run, which an operator's terminal showed.
TERMINAL: dict[str, str] = {}


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory) -> Path:
    """A private run of scenario01 through the CLI (exit 0), its stderr on a terminal."""
    from terminal import run_on_terminal

    run = tmp_path_factory.mktemp("runs") / "good"
    code, out, err = run_on_terminal(
        [sys.executable, "-m", "federation.cli", "simulate", "--data", str(tiny_data),
         "--out", str(run), "--phase-timeout", TIMEOUT, "--json"], timeout=300)
    assert code == 0, err[-2000:]
    TERMINAL["stderr"] = err
    summary = json.loads(out)
    assert summary["training_epsilon"] == 1.0
    assert set(summary["peak_rss_mib"]) == {"coordinator", "swift", "bank01", "bank02"}
    return run


def test_the_ledger_names_parties_not_flower_nodes(trained, capsys):
    """Every entry names a party, the first setup's too (its SuperNodes' parties are known
    only from their answers), and the signed ledgers still verify."""
    from federation.audit import load_run_ledger

    entries = load_run_ledger(trained)
    parties = {"coordinator", "swift", "bank01", "bank02"}
    for stage in ("train", "test"):
        setup = [e for e in entries if e.message_type == f"{stage}.setup"
                 and e.direction == "sent" and e.sender == "coordinator"]
        assert sorted(e.receiver for e in setup) == ["bank01", "bank02", "swift"], stage
    named = {name for e in entries for name in (e.sender, e.receiver, e.recorder)} - {""}
    assert named <= parties, sorted(named - parties)
    assert main(["audit", "verify", str(trained)]) == 0, capsys.readouterr().out


def test_a_terminal_shows_each_phase_as_a_bar_with_an_estimate(trained):
    """On a terminal every phase has a bar (parties done, time, estimate) below the
    progress lines, and the lines themselves are all there; stdout stays one JSON object."""
    err = TERMINAL["stderr"]
    assert "\x1b[K[train] setup [" in err and "3/3 parties" in err
    assert "left" in err  # an estimate, from the parties done so far on a first run
    assert "[test] status [" in err
    assert "[train] setup: swift answered after" in err and "[test] finish: done in" in err


def test_simulate_writes_a_precision_recall_figure_of_the_three_models(trained):
    summary = json.loads((trained / "summary.json").read_text())
    figure = trained / "pr_curve.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 10_000
    auprc = summary["pr_curve"]["auprc"]
    assert auprc["private protocol"] == pytest.approx(summary["auprc"], abs=1e-4)
    assert auprc["PNS only"] == pytest.approx(summary["auprc_pns_only"], abs=1e-4)
    assert 0 < auprc["centralized (in the clear)"] <= 1


def _snapshot(run: Path) -> dict[str, bytes]:
    return {name: (run / name).read_bytes() for name in
            ("run.json", "summary.json", "predictions.csv", "ledger.jsonl")}


# -- exit codes ---------------------------------------------------------------------------
def test_a_failed_party_exits_3_and_the_last_line_names_it(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    code, out, err = _cli("simulate", "--out", str(run), "--stage", "test",
                          "--fail", "bank01:status")
    assert code == 3, err[-2000:]
    last = _last(err)
    assert last.startswith("pv4fad: degraded run") and "bank01" in last
    assert "injected fault" in last and "--allow-degraded" in last
    assert "bank02" not in last  # the healthy bank is not blamed
    # Not a terminal: the plain progress lines, no bar.
    assert "[test] status: done in" in err
    assert "\x1b[K" not in err and "\r" not in err and " parties, " not in err


def test_exit_code_of_a_finished_run(trained, capsys):
    """Privacy failures come first (exit 1), then failed parties (exit 3 unless allowed)."""
    from federation.simulate import outcome

    summary = json.loads((trained / "summary.json").read_text())
    assert outcome(summary, trained, allow_degraded=False) == 0
    summary["stages"]["test"]["failed_parties"] = {"bank02": "setup: bad header"}
    assert outcome(summary, trained, allow_degraded=True) == 0
    assert outcome(summary, trained, allow_degraded=False) == 3
    summary["privacy_checks"]["no_plaintext_crosses_a_boundary"] = 4
    assert outcome(summary, trained, allow_degraded=True) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert "bank02 in test setup: bad header" in err[0]
    assert err[-1].startswith("pv4fad: privacy check failed: no_plaintext_crosses_a_boundary")


# -- run directories ----------------------------------------------------------------------
def test_test_stage_refuses_another_scenario_or_configuration(trained):
    before = _snapshot(trained)
    code, _, err = _cli("simulate", "--out", str(trained), "--stage", "test",
                        "--scenario", "scenario03")
    assert code == 2 and "scenario01" in _last(err) and "scenario03" in _last(err)
    code, _, err = _cli("simulate", "--out", str(trained), "--stage", "test",
                        "--epsilon", "2", "--inference-epsilon", "none")
    last = _last(err)
    assert code == 2 and "--epsilon 1.0" in last and "--epsilon 2.0" in last
    assert "--inference-epsilon 10.0" in last and "--inference-epsilon None" in last
    assert len(err.strip().splitlines()) == 1
    assert _snapshot(trained) == before


def test_interrupted_retrain_leaves_the_run_intact_and_test_refuses_it(
        trained, tiny_data, tmp_path):
    """The reported corruption: Ctrl-C during a retrain's setup, then `--stage test`."""
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    before = _snapshot(run)
    proc = subprocess.Popen(
        [sys.executable, "-m", "federation.cli", "simulate", "--data", str(tiny_data),
         "--out", str(run), "--scenario", "scenario03", "--epsilon", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (run / "training.incomplete").exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        time.sleep(3)  # into the parties' setup
        proc.send_signal(signal.SIGINT)
        interrupted = time.monotonic()
        time.sleep(1)
        proc.send_signal(signal.SIGINT)  # a second Ctrl-C: no traceback
        _, err = proc.communicate(timeout=30)
        stopped = time.monotonic() - interrupted
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and stopped < 10, err[-2000:]
    assert "Traceback" not in err
    assert _last(err) == "pv4fad: interrupted"
    assert _snapshot(run) == before  # run.json and the stage files are the old ones
    code, _, err = _cli("simulate", "--out", str(run), "--stage", "test", "--json")
    last = _last(err)
    assert code == 2 and "did not finish" in last and "scenario03" in last


# -- one line instead of a traceback ------------------------------------------------------
def test_bad_invocations_end_in_one_line(tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    cases = [
        (["simulate", "--out", str(tmp_path / "r"), "--epsilon", "inf"], "finite"),
        (["simulate", "--out", str(tmp_path / "r"), "--fail", "bank01"], "PARTY:PHASE"),
        (["simulate", "--out", str(a_file)], "is a file"),
        (["crypto", "calibrate", "--epsilon", "inf"], "finite epsilon"),
        (["audit"], "name what to audit"),
    ]
    for argv, expected in cases:
        code = _code(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and expected in err[-1], (argv, err)
        assert "Traceback" not in "\n".join(err)
    assert not (tmp_path / "r").exists()  # nothing written for a refused run


def _code(argv: list[str]) -> int:
    """main's exit code, whether it returns it or argparse exits with it."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)


def test_a_damaged_ledger_is_bad_input_not_a_failed_check(tmp_path, capsys):
    ledger = tmp_path / "ledger.jsonl"
    ledger.write_text('{"run": "a"\n{}\n')
    assert main(["audit", "--ledger", str(ledger)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "line 1" in err[0] and str(ledger) in err[0]


def test_an_unreadable_bank_directory_is_one_line_and_leaves_nothing(
        tiny_data, tmp_path, capsys, monkeypatch):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    bank = data / "scenario01" / "train" / "bank01"
    if os.geteuid() == 0:  # root reads any directory: have the file system refuse
        real = Path.is_file

        def is_file(path: Path) -> bool:
            if path.parent == bank:
                raise PermissionError(13, "Permission denied", str(path))
            return real(path)

        monkeypatch.setattr(Path, "is_file", is_file)
    bank.chmod(0)
    try:
        code = main(["simulate", "--data", str(data), "--out", str(tmp_path / "run")])
    finally:
        bank.chmod(0o755)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "Permission denied" in err[-1] and "bank01" in err[-1], err
    assert len(err) == 1
    assert not (tmp_path / "run" / "run.json").exists()


# -- lazy imports (bench/bench_cli_startup.py measures the start-up time) ----------------
@pytest.mark.parametrize("command", ["data", "baseline", "crypto", "sisa", "party",
                                     "simulate", "audit"])
def test_building_a_non_llm_parser_imports_no_heavy_library(command):
    code = ("import sys; from federation.cli import build_parser; "
            f"build_parser([{command!r}]); "
            "print(sorted(m for m in ('torch', 'transformers', 'pandas', 'flwr', 'ray', "
            "'sklearn', 'tenseal', 'crypten') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_the_parser_lists_the_generators_scales():
    from federation.data.cli import SCALE_NAMES
    from federation.data.generate import SCALES

    assert SCALE_NAMES == tuple(sorted(SCALES))


def test_the_sisa_parser_lists_the_real_learners_and_objectives():
    from federation.sisa.learners import LEARNERS
    from llm_modules.fairness.equalized_odds import OBJECTIVES
    from server import sisa_cli

    assert sisa_cli.LEARNERS == LEARNERS and sisa_cli.OBJECTIVES == OBJECTIVES


# -- one vocabulary: old spellings still work, with a warning -----------------------------
def test_old_option_spellings_are_accepted_with_a_warning(tmp_path, capsys):
    assert main(["sisa", "status", "--run", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("pv4fad: warning: --run is now spelled --out")
    assert "no SISA run" in err[-1]
    done = subprocess.run(
        [str(Path(__file__).resolve().parents[1] / "deploy" / "run_local.sh"), "--stages",
         "train", "--timeout", "soon", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=60)
    assert "--stages is now spelled --stage" in done.stderr
    assert "is now spelled --deadline" in done.stderr
    assert done.returncode == 2 and "--deadline must be whole seconds" in done.stderr


def test_run_config_says_none_for_output_privacy_off_as_the_cli_does():
    from federation.config import ProtocolConfig
    from federation.errors import Pv4fadError

    assert ProtocolConfig.from_record({"inference_epsilon": "none"}).inference_epsilon is None
    assert ProtocolConfig.from_record({"inference_epsilon": -1.0}).inference_epsilon is None
    with pytest.raises(Pv4fadError, match="number or \"none\""):
        ProtocolConfig.from_record({"inference_epsilon": "off"})


# -- images: the lock pins and hashes every package ---------------------------------------
def test_the_lock_pins_and_hashes_every_package():
    import re

    text = (Path(__file__).resolve().parents[1] / "requirements.lock").read_text()
    entries = re.split(r"\n(?=[A-Za-z])", "\n".join(
        line for line in text.splitlines() if not line.startswith("#")).strip())
    assert len(entries) > 100
    for entry in entries:
        name = entry.split()[0]
        assert re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][^ ]*", name), entry
        assert re.search(r"--hash=sha256:[0-9a-f]{64}", entry), f"{name} has no hash"
    pinned = {e.split("==")[0].lower().replace("_", "-") for e in entries}
    assert {"torch", "flwr", "tenseal", "setuptools"} <= pinned


def test_flower_telemetry_is_off_unless_the_operator_sets_it():
    import subprocess
    import sys

    code = ("import federation.simulation, flwr.supercore.telemetry as t; "
            "print(t.FLWR_TELEMETRY_ENABLED)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLWR_")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True)
    assert out.stdout.strip() == "0"
