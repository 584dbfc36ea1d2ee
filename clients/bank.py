"""What a bank does and sends, phase by phase.

A bank holds its own account records and never accepts inbound connections: it only
answers the coordinator. What leaves it:
- setup: public keys (X25519 identity, CKKS public context) and the bank codes it serves;
- status: its accounts' status for the PNS's keyed-hash queries, CKKS-encrypted under its
  own key (the PNS cannot decrypt it);
- noise (training): the masked joint counts it decrypted, plus its share of the DP noise,
  as a secure-aggregation input (only the sum over banks can be unmasked);
- release (inference): masked scores it decrypted; for output privacy, the statuses it
  encrypted at inference were drawn by randomized response.
What it learns: which of its accounts the PNS asked about (documented leakage), and
values hidden by masks that only the PNS knows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from clients.backends import secagg_round_tag, to_ring
from clients.party import Party
from crypto.linkage import keyed_hashes, linkage_key
from federation.messages import (
    JOINT_COUNTS,
    LINKAGE,
    NOISE,
    PNS_ID,
    RELEASE,
    SCORE,
    SETUP,
    STATUS,
    Envelope,
)
from federation.transcript import PayloadClass


class Bank(Party):
    role = "bank"

    # 1. setup: validate own data, make keys, publish only public material.
    def setup(self) -> Envelope:
        accounts = self._accounts()
        return self.reply(SETUP, public={
            "e2e_public": self.identity.public_bytes(),
            "ckks_public": self.backend.bank_public(self.state),
            "bank_codes": sorted(accounts["Bank"].astype(str).unique().tolist()),
            "n_accounts": len(accounts),
        })

    # 2. status: answer the PNS's keyed-hash queries with encrypted one-hot status.
    def status(self) -> Envelope:
        from federation.features import ACCOUNT_IDENTITY, beneficiary_status, reported_status

        request = self.open_from(PNS_ID, LINKAGE, self.envelope.sealed[PNS_ID], {
            col: PayloadClass.KEYED_HASH for col in ACCOUNT_IDENTITY})
        key = self._linkage_key()
        accounts = self._accounts()
        # The bank's own records under the same keyed hash: only equality is compared.
        own = pd.DataFrame({col: keyed_hashes(accounts[col], key, col)
                            for col in ACCOUNT_IDENTITY})
        own["Flags"] = accounts["Flags"].to_numpy()
        queries = pd.DataFrame({col: request[col] for col in ACCOUNT_IDENTITY})
        status = reported_status(beneficiary_status(own, queries), self.config.status_detail)
        if self.stage == "test" and self.config.inference_epsilon is not None:
            status = self._randomize(status, queries, self.config.n_statuses)
        blob = self.backend.encrypt_status(self.state, status, self.config.n_statuses)
        sealed = self.seal_for(PNS_ID, STATUS, {"status": blob},
                               {"status": self.backend.status_class})
        public: dict[str, Any] = {"n_queries": len(queries)}
        if self.stage == "test" and self.config.inference_epsilon is not None:
            public.update(self.load_json("inference_privacy.json"))
        return self.reply(STATUS, public=public, sealed={PNS_ID: sealed})

    # 3. noise (training): decrypt masked counts, add a DP noise share, secure-aggregate.
    def noise(self) -> Envelope:
        from crypto.dp import gaussian_share
        from crypto.secagg import SecAggParticipant

        if PNS_ID in self.envelope.sealed:
            fields = self.open_from(PNS_ID, JOINT_COUNTS, self.envelope.sealed[PNS_ID],
                                    {"table": self.backend.table_class})
            masked_counts = self.backend.decrypt_table(self.state, fields["table"])
            self.save_arrays("masked_counts", table=masked_counts)
        else:  # a retry after another bank dropped out: same counts, fresh noise and masks
            masked_counts = self.load_arrays("masked_counts")["table"]
        participants = [str(p) for p in self.envelope.public["participants"]]
        sigma_total = float(self.meta["sigma"])
        share_sigma = sigma_total / np.sqrt(len(participants))
        noise = gaussian_share(masked_counts.shape, sigma_total, len(participants))
        ring = to_ring(masked_counts, noise).ravel()
        # Only the sum over banks is released; the PNS accounts for it (see aggregate).
        self.ledger.record_release(phase=NOISE, round=self.round, details={
            "mechanism": "gaussian share", "noise_scale": share_sigma,
            "total_sigma": sigma_total, "participants": participants,
            "released": "noise share inside the secure sum of joint counts"})
        if self.config.plaintext:
            share = ring.tobytes()
        else:
            share = SecAggParticipant(self.id, self.identity).masked_input(
                ring, participants, secagg_round_tag(self.run_id, self.round),
                _peer_publics(self, participants))
        sealed = self.seal_for(PNS_ID, NOISE, {"share": share},
                               {"share": self.backend.share_class})
        return self.reply(NOISE, sealed={PNS_ID: sealed})

    # 4. release (inference): decrypt the masked scores and return them to the PNS.
    def release(self) -> Envelope:
        fields = self.open_from(PNS_ID, SCORE, self.envelope.sealed[PNS_ID],
                                {"scores": self.backend.rows_class})
        masked_scores = self.backend.decrypt_rows(self.state, fields["scores"])
        # The scores derive from randomized-response statuses; without it they are exact.
        cls = (PayloadClass.DP_NOISED if self.config.inference_epsilon is not None
               else PayloadClass.PLAINTEXT)
        sealed = self.seal_for(PNS_ID, RELEASE, {"scores": masked_scores}, {"scores": cls})
        return self.reply(RELEASE, sealed={PNS_ID: sealed})

    def _randomize(self, status: np.ndarray, queries: pd.DataFrame, k: int) -> np.ndarray:
        """Output privacy: k-ary randomized response, drawn once per distinct queried
        identity so that repeated payments to it reveal nothing more."""
        from crypto.accountant import PrivacyAccountant, Release
        from crypto.dp import categorical_randomized_response

        codes, uniques = pd.MultiIndex.from_frame(queries).factorize()
        first = np.unique(codes, return_index=True)[1]
        reported = categorical_randomized_response(status[first], k,
                                                   float(self.config.inference_epsilon))
        # An account queried with several distinct details gets one release per variant.
        per_account = pd.Series(uniques.get_level_values(0)).value_counts()  # Account
        accountant = PrivacyAccountant(ledger=self.ledger)
        accountant.record(Release(
            mechanism="randomized_response", sensitivity=1.0,
            noise_scale=float(self.config.inference_epsilon), releasing_party=self.id,
            released="status behind the test scores of the most-queried account",
            data_subject="most-queried account", count=int(per_account.max()),
            buckets=k, phase=STATUS, round=self.round))
        self.save_json("inference_privacy.json", {
            "epsilon_per_account_max": accountant.epsilon(self.config.delta),
            "delta": self.config.delta, "releases_per_account_max": int(per_account.max())})
        return reported[codes].astype(status.dtype)

    # -- helpers -----------------------------------------------------------------------
    def _accounts(self) -> pd.DataFrame:
        from federation.data.loader import load_bank_client

        return load_bank_client(self.settings.data_root, self.settings.scenario, self.stage,
                                self.id)

    def _linkage_key(self) -> bytes:
        return linkage_key(self.identity, self.peer_public(PNS_ID), PNS_ID, self.id,
                           self.run_id)


def _peer_publics(bank: Bank, participants: list[str]) -> dict[str, bytes]:
    return {p: bank.peer_public(p) for p in participants if p != bank.id}
