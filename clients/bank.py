"""What a bank does and sends, phase by phase.

A bank holds its own account records and never accepts inbound connections: it only
answers the coordinator. It holds no key that the PNS made ciphertexts for it to decrypt:
nothing it releases is a decryption. Its privacy policy (its node config, never a
message) decides what it serves; anything else is refused with one line naming the
setting and recorded in its ledger. What leaves it:
- setup: the bank codes it serves (routing metadata);
- noise (training): for the PNS's encrypted groups of the queried rows (under the PNS's
  own CKKS key), the encrypted counts of its *reported* statuses per group, with its share
  of the DP noise and its secure-aggregation masks inside, re-randomized and masked so
  that the PNS's decryption shows one number per reply, and only the sum over banks
  means anything (crypto/ckks.py);
- status (inference): its reported status of every queried row.
A reported status is the bank's randomized response, drawn once per question and kept
(clients/bank_answers.py): whatever the PNS or the coordinator does, that is all it can
ever learn about an account, within the account's lifetime budget.
What it learns: which of its accounts the PNS asked about (documented leakage).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from clients.backends import secagg_round_tag
from clients.bank_answers import Answers, StatusAnswers, question_keys
from clients.party import Party
from crypto.linkage import keyed_hashes, linkage_key
from federation.config import training_noise
from federation.messages import LABEL, LINKAGE, NOISE, PNS_ID, SETUP, STATUS, Envelope
from federation.transcript import PayloadClass

TRAINING_RELEASES = "training_releases.json"


class Bank(Party):
    role = "bank"

    # 1. setup: validate own data; only routing metadata leaves (keys are pinned).
    def setup(self) -> Envelope:
        accounts = self._accounts()
        return self.reply(SETUP, public={
            "bank_codes": sorted(accounts["Bank"].astype(str).unique().tolist()),
            "n_accounts": len(accounts),
        })

    # 2. noise (training): encrypted counts of reported statuses, noised and masked.
    def noise(self) -> Envelope:
        from crypto.dp import skellam_share

        self._check_status_epsilon()
        participants = self._check_round([str(p) for p in self.envelope.public["participants"]])
        noise = training_noise(self.config)
        self._check_training_budget(noise)
        if self.round == 0:
            self._answer_training_request()
        saved = self.load_json("training_request.json")
        pns_public = (self.stage_dir() / "pns_ckks_public.bin").read_bytes()
        sums = (self.stage_dir() / "count_sums.bin").read_bytes()
        n_groups, n_columns = int(saved["n_groups"]), self.config.n_statuses - 1
        share = skellam_share((n_groups, n_columns), noise.variance, len(participants))
        n_masks, modulus = self.backend.mask_space(pns_public, n_groups, n_columns)
        masks = self._secagg_masks(participants, n_masks, modulus)
        counts = self.backend.reply(pns_public, sums, share, masks)
        self._record_training_release(noise)
        self._record_round(participants)
        params = {"variance": noise.variance, "l2": noise.l2, "l1": noise.l1}
        sealed = self.seal_for(PNS_ID, NOISE, {
            "counts": counts, "unanswered": np.asarray(saved["unanswered"], dtype=np.int64),
            "params": params}, {"counts": self.backend.counts_class,
                                "unanswered": PayloadClass.PUBLIC, "params": PayloadClass.PUBLIC})
        return self.reply(NOISE, public={
            "noise_variance": noise.variance, "participants": participants,
            "status_epsilon": _label(self.policy.status_epsilon)}, sealed={PNS_ID: sealed})

    def _answer_training_request(self) -> None:
        """Round 0: open the PNS's request, check it, answer the questions, and keep the
        encrypted sums (before noise and masks) for a retry round."""
        fields = self.open_from(PNS_ID, LINKAGE, self.envelope.sealed[PNS_ID], {
            **{c: PayloadClass.KEYED_HASH for c in _tag_columns()},
            "groups": self.backend.groups_class, "pns_public": PayloadClass.PUBLIC})
        queries = pd.DataFrame({c: fields[c] for c in _tag_columns()})
        per_account = queries.groupby("Account").size().max() if len(queries) else 0
        cap = min(self.config.max_rows_per_account, self.policy.max_rows_per_account)
        if self.config.max_rows_per_account > self.policy.max_rows_per_account or \
                per_account > cap:
            raise self.refuse("max_rows_per_account", f"the request counts up to "
                              f"{per_account} rows per account, at most {cap} allowed")
        pns_public = bytes(fields["pns_public"])
        opened = self.backend.open_request(pns_public, bytes(fields["groups"]), len(queries),
                                           self.policy.max_groups)
        answers = self._answer(queries)  # only once the request is known to be well formed
        bits = np.stack([(answers.reported == s).astype(np.int8)
                         for s in range(1, self.config.n_statuses)])
        sums, n_groups = self.backend.product_sums(opened, bits)
        (self.stage_dir() / "pns_ckks_public.bin").write_bytes(pns_public)
        (self.stage_dir() / "count_sums.bin").write_bytes(sums)
        self.save_json("training_request.json", {
            "n_groups": n_groups, "unanswered": answers.unanswered.tolist()})

    # 3. status (inference): the reported status of every queried row.
    def status(self) -> Envelope:
        self._check_status_epsilon()
        fields = self.open_from(PNS_ID, LINKAGE, self.envelope.sealed[PNS_ID], {
            c: PayloadClass.KEYED_HASH for c in _tag_columns()})
        queries = pd.DataFrame({c: fields[c] for c in _tag_columns()})
        answers = self._answer(queries)
        sealed = self.seal_for(PNS_ID, STATUS, {"status": answers.reported},
                               {"status": self._status_class()})
        return self.reply(STATUS, public={"n_queries": len(queries),
                                          "rows_unanswered": int(answers.unanswered.size),
                                          **self._status_privacy(answers)},
                          sealed={PNS_ID: sealed})

    # 4. label (inference, label mode): the bank's side of the two-party comparison; its
    # input is the one-hot vector of its reported statuses (zeros where it does not answer).
    def label(self) -> Envelope:
        from scipy.special import logit

        from crypto.mpc import run_party

        self._check_status_epsilon()
        fields = self.open_from(PNS_ID, LINKAGE, self.envelope.sealed[PNS_ID], {
            c: PayloadClass.KEYED_HASH for c in _tag_columns()})
        queries = pd.DataFrame({c: fields[c] for c in _tag_columns()})
        answers = self._answer(queries)
        onehot = np.zeros((len(queries), self.config.n_statuses))
        ok = answers.reported >= 0
        onehot[np.flatnonzero(ok), answers.reported[ok]] = 1.0
        result = run_party("bank", str(self.envelope.public["rendezvous"]), {"onehot": onehot},
                           float(logit(self.config.label_threshold)), self.config.timeout_s)
        self.ledger.record(
            direction="exchanged", round=self.round, phase=LABEL, sender=self.id,
            receiver=PNS_ID, message_type=f"{self.stage}.{LABEL}", nbytes=result.bytes_sent,
            fields={"shares": PayloadClass.SECRET_SHARE},
            details={"rounds": result.rounds, "seconds": round(result.seconds, 3)})
        return self.reply(LABEL, public={"n_queries": len(queries),
                                         "rows_unanswered": int(answers.unanswered.size),
                                         **self._status_privacy(answers)})

    # -- policy checks ---------------------------------------------------------------------
    def _check_status_epsilon(self) -> None:
        asked, own = self.config.inference_epsilon, self.policy.status_epsilon
        if asked != own:
            raise self.refuse("status_epsilon", f"the run asks for statuses at epsilon "
                              f"{_label(asked)}; this bank reports them at {_label(own)} only")

    def _check_round(self, participants: list[str]) -> list[str]:
        """Participants must be pinned banks, this one among them; round 0 carries the
        PNS's request; a retry (round > 0) only with a strictly smaller set than the last
        round this bank served in this run, so no table is released twice to the same
        set."""
        unknown = sorted({PNS_ID, *participants} - {self.id} - set(self.policy.pinned_keys))
        if unknown:
            raise self.refuse("pinned_keys", f"the policy pins no key for {', '.join(unknown)}: "
                              "not an allowed participant")
        if self.id not in participants or len(set(participants)) != len(participants):
            raise self.refuse("pinned_keys", f"participant list {participants} must name "
                              f"{self.id} once")
        rounds = self._served_rounds().get(self.run_id, [])
        first = self.round == 0 and not rounds and PNS_ID in self.envelope.sealed
        retry = (self.round > 0 and bool(rounds) and PNS_ID not in self.envelope.sealed
                 and self.round > rounds[-1][0] and set(participants) < set(rounds[-1][1]))
        if not (first or retry):
            raise self.refuse("one release per table", f"round {self.round} with "
                              f"{sorted(participants)} is neither the first round of run "
                              f"{self.run_id} nor a retry with strictly fewer participants "
                              f"than the rounds served ({rounds})")
        return sorted(participants)

    def _served_rounds(self) -> dict[str, list[Any]]:
        path = self.stage_dir() / "noise_rounds.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def _record_round(self, participants: list[str]) -> None:
        served = self._served_rounds()
        served[self.run_id] = [*served.get(self.run_id, []), [self.round, participants]]
        path = self.stage_dir() / "noise_rounds.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(served))
        tmp.replace(path)

    def _check_training_budget(self, noise: Any) -> None:
        from crypto.accountant import PrivacyAccountant

        policy, config = self.policy, self.config
        if config.epsilon > policy.max_training_epsilon or \
                config.delta > policy.max_training_delta:
            raise self.refuse("max_training_epsilon", f"the run asks for training epsilon "
                              f"{config.epsilon:g} at delta {config.delta:g}; at most "
                              f"{policy.max_training_epsilon:g} at "
                              f"{policy.max_training_delta:g}")
        lifetime = PrivacyAccountant()
        for release in [*self._training_releases(), self._training_release(noise)]:
            lifetime.record(release)
        spent = lifetime.epsilon(policy.max_training_delta)
        if spent > policy.lifetime_training_epsilon:
            raise self.refuse("lifetime_training_epsilon", f"serving this round would bring "
                              f"the lifetime training epsilon to {spent:.3g}, above "
                              f"{policy.lifetime_training_epsilon:g}")

    # -- answers and accounting -------------------------------------------------------------
    def _answer(self, queries: pd.DataFrame) -> Answers:
        """Each queried row's reported status (persistent randomized response)."""
        from federation.features import beneficiary_status, reported_status

        accounts = self._accounts()
        key = self._linkage_key()
        own = pd.DataFrame({col: keyed_hashes(accounts[col], key, col)
                            for col in _tag_columns()})
        own["Flags"] = accounts["Flags"].to_numpy()
        true = reported_status(beneficiary_status(own, queries), self.config.status_detail)
        return StatusAnswers(self.state, self.policy, self.config.n_statuses).answer(
            queries["Account"].to_numpy(dtype="S16"), question_keys(queries), true)

    def _status_class(self) -> PayloadClass:
        return (PayloadClass.PLAINTEXT if self.policy.status_epsilon is None
                else PayloadClass.DP_NOISED)

    def _status_privacy(self, answers: Answers) -> dict[str, Any]:
        """Record the status release; per account the loss is status_epsilon per distinct
        question over its life (the most asked account of this request is reported)."""
        from crypto.accountant import PrivacyAccountant, Release

        eps = self.policy.status_epsilon
        if eps is None or answers.questions_max == 0:
            return {}
        accountant = PrivacyAccountant(ledger=self.ledger)
        accountant.record(Release(
            mechanism="randomized_response", sensitivity=1.0, noise_scale=eps,
            releasing_party=self.id, data_subject="most-asked account",
            released="status answers (one per question, kept for life)",
            count=answers.questions_max, buckets=self.config.n_statuses, phase=STATUS,
            round=self.round))
        return {"epsilon_per_account_max": accountant.epsilon(self.config.delta),
                "questions_per_account_max": answers.questions_max,
                "new_questions": answers.new_questions}

    def _training_releases(self) -> list[Any]:
        from crypto.accountant import Release

        path = self.state / TRAINING_RELEASES
        return [Release(**r) for r in json.loads(path.read_text())] if path.exists() else []

    def _training_release(self, noise: Any) -> Any:
        from crypto.accountant import Release

        return Release(mechanism="skellam", sensitivity=noise.l2, noise_scale=noise.variance,
                       l1_sensitivity=noise.l1, releasing_party=self.id,
                       released="noise share inside the secure sum of joint counts",
                       phase=NOISE, round=self.round)

    def _record_training_release(self, noise: Any) -> None:
        from dataclasses import asdict

        from crypto.accountant import PrivacyAccountant

        release = self._training_release(noise)
        PrivacyAccountant(ledger=self.ledger).record(release)
        releases = [asdict(r) for r in [*self._training_releases(), release]]
        self.save_json(TRAINING_RELEASES, releases)

    def _secagg_masks(self, participants: list[str], n: int, modulus: int) -> list[int]:
        from crypto.secagg import SecAggParticipant

        if n == 0 or len(participants) == 1:
            return [0] * n
        peers = {p: self.peer_public(p) for p in participants if p != self.id}
        return SecAggParticipant(self.id, self.identity).masks(
            participants, secagg_round_tag(self.run_id, self.round), peers, n, modulus)

    # -- helpers -----------------------------------------------------------------------
    def _accounts(self) -> pd.DataFrame:
        from federation.data.loader import load_bank_client

        return load_bank_client(self.settings.data_root, self.settings.scenario, self.stage,
                                self.id)

    def _linkage_key(self) -> bytes:
        return linkage_key(self.identity, self.peer_public(PNS_ID), PNS_ID, self.id)


def _tag_columns() -> tuple[str, ...]:
    from federation.features import ACCOUNT_IDENTITY

    return tuple(ACCOUNT_IDENTITY)


def _label(epsilon: float | None) -> str:
    return "none (exact)" if epsilon is None else f"{epsilon:g}"
