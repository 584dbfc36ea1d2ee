"""A party's privacy policy file and the `pv4fad party` commands that make it."""

from __future__ import annotations

import json

import pytest

from federation.cli import main
from federation.errors import Pv4fadError
from federation.policy import PolicyRefusal, PrivacyPolicy

KEY = "ab" * 32


def test_policy_round_trips_and_answers_its_limits(tmp_path):
    policy = PrivacyPolicy(pinned_keys={"swift": KEY}, status_epsilon=4.0,
                           lifetime_account_epsilon=13.0)
    policy.save(tmp_path / "p.json")
    again = PrivacyPolicy.load(tmp_path / "p.json")
    assert again == policy and again.max_questions_per_account == 3
    assert again.pinned("swift") == bytes.fromhex(KEY)
    with pytest.raises(PolicyRefusal, match="pins no key for party 'bank09'"):
        again.pinned("bank09")
    assert PrivacyPolicy(status_epsilon=None).max_questions_per_account is None


@pytest.mark.parametrize("content, message", [
    ("{", "not valid JSON"),
    ("[1]", "expected a JSON object"),
    ('{"status_epsilon": 1, "max_epsilon": 2}', "unknown: \\['max_epsilon'\\]"),
    ('{"pinned_keys": {"swift": "00"}}', "pinned key of 'swift'"),
    ('{"status_epsilon": -1}', "status_epsilon must be a positive number or null"),
    ('{"max_training_epsilon": "1"}', "max_training_epsilon must be a positive number"),
    ('{"max_training_delta": 1.5}', "max_training_delta must be in"),
    ('{"max_rows_per_account": 1.5}', "max_rows_per_account must be a whole number"),
    ('{"allow_plaintext": "yes"}', "allow_plaintext must be true or false"),
])
def test_bad_policy_files_named_in_one_line(tmp_path, content, message):
    path = tmp_path / "policy.json"
    path.write_text(content)
    with pytest.raises(Pv4fadError, match=message) as err:
        PrivacyPolicy.load(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(Pv4fadError, match="cannot read"):
        PrivacyPolicy.load(tmp_path / "absent.json")


def test_party_init_and_policy_commands(tmp_path, capsys):
    assert main(["party", "init", "--out", str(tmp_path / "bank01"), "--json"]) == 0
    made = json.loads(capsys.readouterr().out)
    assert len(made["public_key"]) == 64 and (tmp_path / "bank01" / "identity.key").exists()
    assert (tmp_path / "bank01" / "identity.key").stat().st_mode & 0o077 == 0
    assert main(["party", "init", "--out", str(tmp_path / "bank01")]) == 2  # never overwritten
    assert "exists" in capsys.readouterr().err
    out = tmp_path / "policy.json"
    assert main(["party", "policy", "--out", str(out), "--pin",
                 f"swift={made['public_key']}", "--status-epsilon", "8",
                 "--lifetime-account-epsilon", "16", "--json"]) == 0
    policy = PrivacyPolicy.load(out)
    assert policy.pinned_keys == {"swift": made["public_key"]}
    assert policy.status_epsilon == 8 and policy.max_questions_per_account == 2
    assert main(["party", "policy", "--out", str(out), "--pin", "swift"]) == 2
    assert main(["party", "policy", "--out", str(out), "--max-rows-per-account", "none"]) == 2
