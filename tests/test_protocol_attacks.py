"""A PNS or a coordinator that deviates attacks an unmodified bank; each attack must fail
(refused, or recovering nothing better than the bank's own DP bound allows).

Every attacker is written with the project's own code (its CKKS, channel and linkage
functions); the bank is `clients.bank.Bank` as deployed, with its policy from its own
node config. The banks here report statuses at epsilon 1, so that "what randomized
response allows" (about 73 % agreement with the truth) is far from exact recovery.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from party_harness import (
    PNS,
    TAGS,
    World,
    call_bank,
    linkage_fields,
    open_reply,
    sealed_by,
    true_status,
)

from clients.bank_answers import RR_KEY_FILE, question_keys
from crypto import _sealio, _sealraw, framing
from crypto.ckks import CKKSKeyPair, data_modulus
from crypto.dp import keyed_randomized_response, rr_keep_probability
from federation.config import ProtocolConfig
from federation.errors import CryptoError
from federation.policy import PolicyRefusal, PrivacyPolicy
from federation.transcript import read_ledger

STATUS_EPSILON = 1.0
CONFIG = ProtocolConfig(inference_epsilon=STATUS_EPSILON)
POLICY = PrivacyPolicy(status_epsilon=STATUS_EPSILON, lifetime_training_epsilon=3.0,
                       lifetime_account_epsilon=2.0)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    from federation.data.generate import generate

    data = generate(tmp_path_factory.mktemp("data") / "tiny", "tiny", 0)
    return World(tmp_path_factory.mktemp("world"), data, POLICY)


@pytest.fixture(scope="module")
def records(world) -> pd.DataFrame:
    """Identities the attacker asks about: bank01's own records (exact details)."""
    from federation.data.loader import load_bank_client

    accounts = load_bank_client(world.data, world.scenario, "train", "bank01")
    return accounts.drop_duplicates("Account")[list(TAGS)].head(800).reset_index(drop=True)


def _fixed_rr_key(state: Path) -> bytes:
    """The bank's secret answering key, fixed so that the test is deterministic."""
    key = bytes(range(32))
    (state / RR_KEY_FILE).write_bytes(key)
    return key


def _bit_reading_request(keys: CKKSKeyPair, n_rows: int) -> tuple[bytes, list[list[int]]]:
    """The strongest linear attack: instead of 0/1 group indicators, give each target row
    its own bit position in one polynomial (17 per 25-bit digit, above the DP noise), so
    that one decrypted coefficient spells out 68 rows' bits. 64 "groups" = 16 polynomials,
    enough for every row here. Returns the request and, per polynomial, its target rows."""
    params, suite = keys.params, keys.suite
    primes, _ = data_modulus(keys)
    positions = [params.unit_bits + 25 * d + 7 + i for d in range(4) for i in range(17)]
    targets = [list(range(p, n_rows, 16)) for p in range(16)]
    blobs = []
    for rows in targets:
        coeffs = [0] * params.poly_modulus_degree
        for row, bit in zip(rows, positions, strict=False):
            coeffs[row] = 1 << bit
        plain = _sealraw.ntt_plaintext(suite, suite.data_parms_id,
                                       _sealraw.residues_of(coeffs, primes),
                                       float(2**params.unit_bits))
        blobs.append(_sealio.dump(keys.encryptor.encrypt_symmetric(plain)))
    header = {"param_id": params.param_id, "key_id": keys.key_id, "n_rows": n_rows,
              "n_groups": 64}
    return framing.pack("ckks-groups", header, blobs), targets


def _read_bits(keys: CKKSKeyPair, reply: bytes, targets: list[list[int]], n_rows: int
               ) -> np.ndarray:
    """Decrypt the reply and spell out every target row's bit (the DP noise sits below
    bit 7 of each digit)."""
    from crypto.ckks import DigitLayout, constant_terms, decode_counts

    _, modulus = data_modulus(keys)
    terms = constant_terms(keys, reply, 1, len(targets))
    digits = decode_counts(DigitLayout(64, keys.params), terms, modulus)[0].reshape(16, 4)
    bits = np.full(n_rows, -1)
    for p, rows in enumerate(targets):
        for i, row in enumerate(rows[:68]):
            bits[row] = ((int(digits[p, i // 17]) + 64) >> (7 + i % 17)) & 1
    return bits


def test_pns_reading_any_linear_function_learns_only_randomized_statuses(world, records):
    """Attacks 1 and 2 of the issue. The bank decrypts nothing (it holds no CKKS key, so
    there is no key to recover); a PNS that amplifies rows or crafts its ciphertexts reads
    an arbitrary linear function of the bank's bits per reply, here every queried row's
    bit exactly. Those bits are the bank's randomized-response answers at epsilon 1: they
    agree with the true statuses no more often than e / (1 + e)."""
    state = world.fresh_state("bank01", "linear")
    rr_key = _fixed_rr_key(state)
    keys = CKKSKeyPair.generate()
    request, targets = _bit_reading_request(keys, len(records))
    fields = {**linkage_fields(world, "bank01", records), "groups": request,
              "pns_public": keys.public_context_bytes()}
    sealed = sealed_by(world.identity(PNS), PNS, "bank01", world.public("bank01"), fields,
                       "linkage", "train", "run-linear")
    reply = call_bank(world, "bank01", state, "noise", CONFIG, "train", "run-linear",
                      sealed=sealed, participants=["bank01"])
    read = _read_bits(keys, open_reply(world, "bank01", reply, "noise", "train",
                                       "run-linear")["counts"], targets, len(records))
    truth = true_status(world, "bank01", records)
    tags = pd.DataFrame({c: v for c, v in fields.items() if c in TAGS})
    answers = keyed_randomized_response(
        truth.astype(np.int64), [bytes(q) + bytes([int(s)]) for q, s in
                                 zip(question_keys(tags), truth, strict=True)],
        2, STATUS_EPSILON, rr_key)
    assert (read >= 0).all()
    np.testing.assert_array_equal(read, answers)  # the attack reads every answer ...
    agreement = (read == truth).mean()  # ... and the answers are randomized response
    assert abs(agreement - rr_keep_probability(STATUS_EPSILON, 2)) < 0.05
    assert agreement < 0.8
    assert not list(state.glob("**/ckks_secret*"))


def test_replayed_training_request_is_refused_at_test_and_twice(world, records):
    """Replaying the training request into the test stage (attack: exact training
    statuses into the release) fails authentication; the same message twice is refused."""
    state = world.fresh_state("bank01", "replay")
    fields = linkage_fields(world, "bank01", records.head(10))
    train_blob = sealed_by(world.identity(PNS), PNS, "bank01", world.public("bank01"),
                           fields, "linkage", "train", "run-r")
    with pytest.raises(CryptoError, match="header mismatch: message_type"):
        call_bank(world, "bank01", state, "status", CONFIG, "test", "run-r",
                  sealed=train_blob)
    test_blob = sealed_by(world.identity(PNS), PNS, "bank01", world.public("bank01"), fields,
                          "linkage", "test", "run-r")
    call_bank(world, "bank01", state, "status", CONFIG, "test", "run-r", sealed=test_blob)
    with pytest.raises(CryptoError, match="replayed"):
        call_bank(world, "bank01", state, "status", CONFIG, "test", "run-r",
                  sealed=test_blob)


@pytest.mark.parametrize("request_config, setting", [
    (ProtocolConfig(inference_epsilon=STATUS_EPSILON, plaintext=True), "allow_plaintext"),
    (ProtocolConfig(inference_epsilon=700.0), "status_epsilon"),
    (ProtocolConfig(inference_epsilon=None), "status_epsilon"),
    (ProtocolConfig(inference_epsilon=STATUS_EPSILON, epsilon=100.0), "max_training_epsilon"),
    (ProtocolConfig(inference_epsilon=STATUS_EPSILON, max_rows_per_account=5),
     "max_rows_per_account"),
])
def test_coordinator_cannot_set_the_banks_privacy(world, records, request_config, setting):
    """Attack 3: the coordinator's run configuration is a request; outside the bank's own
    policy it is refused with one line naming the setting, recorded in the bank's ledger."""
    state = world.fresh_state("bank01", f"config-{setting}")
    keys = CKKSKeyPair.generate()
    from crypto.ckks import encrypt_groups

    fields = {**linkage_fields(world, "bank01", records.head(50)),
              "groups": encrypt_groups(keys, np.zeros(50, np.int64), 12),
              "pns_public": keys.public_context_bytes()}
    sealed = sealed_by(world.identity(PNS), PNS, "bank01", world.public("bank01"), fields,
                       "linkage", "train", "run-c")
    with pytest.raises(PolicyRefusal, match=f"bank01 refuses: .*policy {setting}"):
        call_bank(world, "bank01", state, "noise", request_config, "train", "run-c",
                  sealed=sealed, participants=["bank01", "bank02"])
    refusals = [e for e in read_ledger(state / "ledger.jsonl") if e.direction == "refusal"]
    assert [e.details["setting"] for e in refusals] == [setting]


def test_coordinator_cannot_stand_in_for_the_pns_or_add_participants(world, records):
    """Attack 3: a coordinator sealing with its own key in the PNS's name fails
    authentication against the pinned key; an invented participant (to shrink the noise
    shares) is refused."""
    from crypto.channel import E2EIdentity

    state = world.fresh_state("bank01", "mitm")
    mallory = E2EIdentity.generate()
    fields = linkage_fields(world, "bank01", records.head(20), pns=mallory)
    forged = sealed_by(mallory, PNS, "bank01", world.public("bank01"), fields, "linkage",
                       "test", "run-m")
    with pytest.raises(CryptoError, match="authentication failed"):
        call_bank(world, "bank01", state, "status", CONFIG, "test", "run-m", sealed=forged)
    with pytest.raises(PolicyRefusal, match="pins no key for mallory"):
        call_bank(world, "bank01", state, "noise", CONFIG, "train", "run-m",
                  sealed=forged, participants=["bank01", "bank02", "mallory"])


def test_noise_rounds_cannot_be_replayed_or_repeated(world, records):
    """Attack 4: one release per table; a retry only with strictly fewer participants;
    every served round is accounted, and the lifetime budget ends it."""
    from crypto.ckks import encrypt_groups

    state = world.fresh_state("bank01", "rounds")
    keys = CKKSKeyPair.generate()
    fields = {**linkage_fields(world, "bank01", records.head(100)),
              "groups": encrypt_groups(keys, np.arange(100) % 12, 12),
              "pns_public": keys.public_context_bytes()}
    sealed = sealed_by(world.identity(PNS), PNS, "bank01", world.public("bank01"), fields,
                       "linkage", "train", "run-n")
    three = ["bank01", "bank02", "bank03"]
    # Two releases at epsilon 1 compose to 1.45, a third would reach 1.81.
    policy = PrivacyPolicy(status_epsilon=STATUS_EPSILON, lifetime_training_epsilon=1.6,
                           lifetime_account_epsilon=2.0)
    pins = json.loads(Path(world.policies["bank01"]).read_text())["pinned_keys"]
    pins["bank03"] = world.public("bank02").hex()  # a third pinned bank

    def noise(round_: int, participants: list[str], blob: bytes | None = None):
        return call_bank(world, "bank01", state, "noise", CONFIG, "train", "run-n",
                         round=round_, sealed=blob, participants=participants,
                         policy=PrivacyPolicy(**{**policy.to_json(), "pinned_keys": pins}))

    noise(0, three, sealed)
    with pytest.raises(PolicyRefusal, match="one release per table"):
        noise(0, three)  # the same round again (no request: it cannot be re-sent either)
    with pytest.raises(PolicyRefusal, match="one release per table"):
        noise(1, three)  # a "retry" with the same participants
    noise(1, ["bank01", "bank02"])  # a genuine retry
    with pytest.raises(PolicyRefusal, match="one release per table"):
        noise(2, ["bank01", "bank02"])
    with pytest.raises(PolicyRefusal, match="lifetime_training_epsilon"):
        noise(2, ["bank01"])  # fewer participants, but the lifetime budget is spent
    served = json.loads((state / "training_releases.json").read_text())
    assert len(served) == 2
    releases = [e for e in read_ledger(state / "ledger.jsonl") if e.direction == "release"]
    assert len(releases) == 2


def test_output_privacy_does_not_grow_with_runs(world, records):
    """Attack 5: asking the same questions in every run gets the same answers; an
    account is asked at most lifetime / status epsilon distinct questions (here 2), after
    which new ones go unanswered."""
    state = world.fresh_state("bank01", "runs")
    identities = records.head(200)

    def ask(run_id: str, who: pd.DataFrame) -> dict:
        sealed = sealed_by(world.identity(PNS), PNS, "bank01", world.public("bank01"),
                           linkage_fields(world, "bank01", who), "linkage", "test", run_id)
        reply = call_bank(world, "bank01", state, "status", CONFIG, "test", run_id,
                          sealed=sealed)
        return {**reply.public, **open_reply(world, "bank01", reply, "status", "test",
                                             run_id)}

    first, again = ask("day-1", identities), ask("day-2", identities)
    np.testing.assert_array_equal(first["status"], again["status"])
    assert first["questions_per_account_max"] == again["questions_per_account_max"] == 1
    assert again["new_questions"] == 0
    other_names = [identities.assign(Name=identities["Name"] + f" variant{i}")
                   for i in (1, 2)]
    second = ask("day-3", other_names[0])
    assert (second["status"] >= 0).all() and second["questions_per_account_max"] == 2
    third = ask("day-4", other_names[1])
    assert (third["status"] == -1).all()  # the budget of 2 questions per account is spent
    assert third["rows_unanswered"] == len(identities)
    assert second["epsilon_per_account_max"] == pytest.approx(2 * STATUS_EPSILON, rel=0.02)
