"""What the payment network (PNS, client id `swift`) does and sends, phase by phase.

The PNS holds the transactions and labels. It trains its random forest on its own features
in the clear, and learns about the banks' records only through:
- training: DP-noised joint counts (cell x class x bank status), summed over banks by
  secure aggregation, from which it builds the status-aware table
  (federation/status_model.py);
- inference: each test row's status evidence E[row, status], from the status the bank
  reported by randomized response (output privacy); it adds its forest's own evidence.
What it sends: keyed hashes of beneficiary identities (linkage), and CKKS ciphertexts under
the bank's key with its own masks added (the bank decrypts only masked values).
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from clients.backends import from_ring, secagg_round_tag, unmask_rows
from clients.party import Party
from crypto.linkage import keyed_hashes, linkage_key
from federation.config import ProtocolConfig
from federation.errors import ProtocolError
from federation.features import ACCOUNT_IDENTITY, IDENTITY_COLUMNS
from federation.messages import (
    AGGREGATE,
    FINISH,
    JOINT_COUNTS,
    LINKAGE,
    NOISE,
    RELEASE,
    SCORE,
    SETUP,
    STATUS,
    Envelope,
)
from federation.status_model import (
    N_CLASSES,
    NORMAL,
    ForestCalibration,
    StatusCells,
    StatusTable,
    anomaly_classes,
    beneficiary_keys,
    capped_rows,
    combined_scores,
)
from federation.transcript import PayloadClass

# Query columns in the transactions and the names the bank's status function expects.
QUERY_COLUMNS = dict(zip(IDENTITY_COLUMNS, ACCOUNT_IDENTITY, strict=True))


class PaymentNetwork(Party):
    role = "pns"

    # 1. setup: validate own data; train the forest (training) or score with it (test).
    def setup(self) -> Envelope:
        from federation.data.loader import load_transactions
        from federation.features import final_receiver

        tx = load_transactions(self.settings.data_root, self.settings.scenario, self.stage)
        receivers = final_receiver(tx).to_numpy()
        if self.stage == "train":
            labels = tx["Label"].to_numpy(dtype=np.int8)
            trained = train_model(tx, receivers, labels, self.config)
            self._save_model("pns_model.pkl", trained.model)
            counted, cells, classes = trained.counted, trained.cells, trained.classes
            scores = np.zeros((len(tx), 2))
            scores[counted] = trained.oob_scores
        else:
            model = self._load_model("pns_model.pkl")
            scores, cells = model_scores(model, tx)
            labels = (tx["Label"].to_numpy(dtype=np.int8) if "Label" in tx
                      else np.full(len(tx), -1, dtype=np.int8))
            counted, classes = np.arange(len(tx)), np.full(len(tx), -1, dtype=np.int8)
        rows = tx[["MessageId", *QUERY_COLUMNS]].copy()
        rows["final_receiver"] = receivers
        rows.to_parquet(self.stage_dir() / "rows.parquet", index=False)
        self.save_arrays("scores", score=scores, cell=cells, label=labels, klass=classes,
                         counted=counted)
        return self.reply(SETUP, public={"e2e_public": self.identity.public_bytes(),
                                         "n_rows": len(tx)})

    # 2. linkage: route rows to the bank holding the beneficiary; send keyed hashes.
    def linkage(self) -> Envelope:
        banks = json.loads(str(self.envelope.public["banks_json"]))
        owners = [str(o) for o in self.envelope.public["ckks_owners"]]
        for bank, context in zip(owners, self.envelope.public["ckks_publics"], strict=True):
            (self.state / f"ckks_public_{bank}.bin").write_bytes(bytes(context))
        code_to_bank = {code: bank for bank, info in banks.items() for code in info["codes"]}
        rows = pd.read_parquet(self.stage_dir() / "rows.parquet")
        route = rows["final_receiver"].map(code_to_bank)
        counted = np.zeros(len(rows), dtype=bool)
        counted[self.load_arrays("scores")["counted"]] = True
        sealed: dict[str, bytes] = {}
        for bank in banks:
            idx = np.flatnonzero((route == bank).to_numpy() & counted)
            identities = rows.iloc[idx]
            key = linkage_key(self.identity, self.peer_public(bank), self.id, bank, self.run_id)
            request = {target: keyed_hashes(identities[source], key, target)
                       for source, target in QUERY_COLUMNS.items()}
            self.save_arrays(f"linkage_{bank}", rows=idx)
            sealed[bank] = self.seal_for(bank, LINKAGE, request, {
                name: PayloadClass.KEYED_HASH for name in request})
        unrouted = int(route.isna().sum())
        return self.reply(LINKAGE, public={"unrouted_rows": unrouted}, sealed=sealed)

    # 3. joint counts (training): masked encrypted counts per (cell, class) x status.
    def joint_counts(self) -> Envelope:
        arrays = self.load_arrays("scores")
        groups = arrays["cell"].astype(np.int64) * N_CLASSES + arrays["klass"]
        n_groups = N_CLASSES * self.config.n_cells
        sealed: dict[str, bytes] = {}
        for bank, blob in self.envelope.sealed.items():
            status = self.open_from(bank, STATUS, blob, {"status": self.backend.status_class})
            rows = self.load_arrays(f"linkage_{bank}")["rows"]
            table, mask_totals = self.backend.masked_table(
                self._bank_context(bank), status["status"], groups[rows], n_groups)
            self.save_arrays(f"masks_{bank}", totals=mask_totals)
            sealed[bank] = self.seal_for(bank, JOINT_COUNTS, {"table": table},
                                         {"table": self.backend.table_class})
        return self.reply(JOINT_COUNTS, sealed=sealed)

    # 4. aggregate (training): unmask the secure sum, build the status-aware table.
    def aggregate(self) -> Envelope:
        from crypto.accountant import PrivacyAccountant, Release
        from crypto.secagg import aggregate

        participants = [str(p) for p in self.envelope.public["participants"]]
        shares = {
            bank: self.open_from(bank, NOISE, self.envelope.sealed[bank],
                                 {"share": self.backend.share_class})["share"]
            for bank in participants
        }
        if self.config.plaintext:
            total = sum(np.frombuffer(s, dtype=np.uint64) for s in shares.values())
        else:
            total = aggregate(shares, participants, secagg_round_tag(self.run_id, self.round))
        masks = sum(self.load_arrays(f"masks_{b}")["totals"].ravel() for b in participants)
        noisy = from_ring(np.asarray(total, dtype=np.uint64), np.asarray(masks))
        arrays = self.load_arrays("scores")
        counted = arrays["counted"]
        position = np.full(len(arrays["cell"]), -1)
        position[counted] = np.arange(len(counted))
        in_table = np.concatenate([self.load_arrays(f"linkage_{b}")["rows"]
                                   for b in participants])
        table = StatusTable.from_noisy_counts(
            noisy.reshape(self.config.n_cells, N_CLASSES, -1)[:, :, 1:],
            arrays["cell"][counted], arrays["klass"][counted], position[in_table])
        self.save_json("status_table.json", table.to_json())
        accountant = PrivacyAccountant(ledger=self.ledger)
        accountant.record(Release(
            mechanism="gaussian", sensitivity=float(self.meta["sensitivity"]),
            noise_scale=float(self.meta["sigma"]), releasing_party="+".join(participants),
            released="joint counts (secure sum over banks)", phase=AGGREGATE,
            round=self.round))
        return self.reply(AGGREGATE, public={
            "training_epsilon": accountant.epsilon(self.config.delta),
            "training_delta": self.config.delta, "banks_in_table": participants})

    # 5. score (inference): the status's evidence E[row, status] under the bank's key,
    # masked per row.
    def score(self) -> Envelope:
        table = StatusTable.from_json(self.load_json("status_table.json"))
        arrays = self.load_arrays("scores")
        sealed: dict[str, bytes] = {}
        for bank, blob in self.envelope.sealed.items():
            status = self.open_from(bank, STATUS, blob, {"status": self.backend.status_class})
            rows = self.load_arrays(f"linkage_{bank}")["rows"]
            evidence = table.status_evidence(arrays["score"][rows], arrays["cell"][rows],
                                             self.config.inference_epsilon)
            scores, offsets = self.backend.masked_rows(
                self._bank_context(bank), status["status"], evidence)
            self.save_arrays(f"masks_{bank}", offsets=offsets)
            sealed[bank] = self.seal_for(bank, SCORE, {"scores": scores},
                                         {"scores": self.backend.rows_class})
        return self.reply(SCORE, sealed=sealed)

    # 6. finish (inference): unmask the status evidence and add the forest's; rows without
    # a bank answer keep the forest's evidence alone.
    def finish(self) -> Envelope:
        from sklearn.metrics import average_precision_score

        table = StatusTable.from_json(self.load_json("status_table.json"))
        arrays = self.load_arrays("scores")
        cells, labels = arrays["cell"], arrays["label"]
        evidence = np.zeros(len(cells))
        answered = np.zeros(len(cells), dtype=bool)
        noised = self.config.inference_epsilon is not None
        for bank, blob in self.envelope.sealed.items():
            released = self.open_from(bank, RELEASE, blob, {
                "scores": PayloadClass.DP_NOISED if noised else PayloadClass.PLAINTEXT})
            rows = self.load_arrays(f"linkage_{bank}")["rows"]
            offsets = self.load_arrays(f"masks_{bank}")["offsets"]
            evidence[rows] = unmask_rows(np.asarray(released["scores"]), offsets)
            answered[rows] = True
        final = combined_scores(table.forest_log_odds(arrays["score"], cells), evidence)
        rows = pd.read_parquet(self.stage_dir() / "rows.parquet", columns=["MessageId"])
        out = self.stage_dir() / "predictions.csv"
        pd.DataFrame({"MessageId": rows["MessageId"], "Score": final}).to_csv(out, index=False)
        public: dict[str, Any] = {"predictions": str(out), "rows": len(final),
                                  "rows_without_bank_answer": int((~answered).sum())}
        if (labels >= 0).all() and labels.any():
            public["auprc"] = float(average_precision_score(labels, final))
            public["auprc_pns_only"] = float(average_precision_score(
                labels, arrays["score"].sum(axis=1)))
        return self.reply(FINISH, public=public)

    # -- helpers -----------------------------------------------------------------------
    def _bank_context(self, bank: str) -> bytes:
        path = self.state / f"ckks_public_{bank}.bin"
        if not path.exists():
            raise ProtocolError(f"{self.id}: no CKKS public context from {bank}")
        return path.read_bytes()

    def _save_model(self, name: str, model: dict[str, Any]) -> None:
        with (self.state / name).open("wb") as fh:
            pickle.dump(model, fh)

    def _load_model(self, name: str) -> dict[str, Any]:
        path = self.state / name
        if not path.exists():
            raise ProtocolError(f"{self.id}: no trained model at {path}; run the train stage")
        with path.open("rb") as fh:  # the party's own file, written by _save_model
            return pickle.load(fh)


@dataclass(frozen=True)
class Trained:
    """The PNS's model, the rows that enter the joint counts with their calibrated
    out-of-bag scores, and every training row's cell and class."""

    model: dict[str, Any]
    counted: np.ndarray
    oob_scores: np.ndarray
    cells: np.ndarray
    classes: np.ndarray


def train_model(tx: pd.DataFrame, receivers: np.ndarray, labels: np.ndarray,
                config: ProtocolConfig) -> Trained:
    """The PNS's own training: features; a forest on the labels, whose out-of-bag votes
    sort the anomalies into explained and unexplained; the forest on those classes (the
    one kept), its calibration, and the cells."""
    from federation.features import PNSFeaturizer

    featurizer = PNSFeaturizer()
    # Leave-one-out history features on training rows, as at test time.
    features = featurizer.fit_transform(tx)
    # Bound one account's influence on the counts (the DP sensitivity).
    accounts = beneficiary_keys(receivers, tx["BeneficiaryAccount"])
    counted = capped_rows(np.arange(len(tx)), accounts, config.max_rows_per_account,
                          np.random.default_rng(config.seed))
    anomalies = np.flatnonzero(labels == 1)
    # Only the votes are kept: the first forest is freed before the second is grown.
    votes = _fit_forest(features, labels, config.seed, anomalies, n_classes=2)[1]
    classes = np.full(len(labels), NORMAL, dtype=np.int8)
    classes[anomalies] = anomaly_classes(labels[anomalies], votes[:, 1])
    forest, votes = _fit_forest(features, classes, config.seed, counted, N_CLASSES)
    calibration = ForestCalibration(votes, classes[counted])
    cells = StatusCells(features[counted], classes[counted], config.cell_depth, config.seed)
    model = {"featurizer": featurizer, "forest": forest, "calibration": calibration,
             "cells": cells}
    return Trained(model, counted, calibration(votes), cells(features), classes)


def model_scores(model: dict[str, Any], tx: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated forest scores (P(explained), P(unexplained)) and cells of new
    transactions."""
    features = model["featurizer"].transform(tx)
    forest = model["forest"]
    raw = np.zeros((len(features), N_CLASSES))
    raw[:, forest.classes_] = forest.predict_proba(features)
    return model["calibration"](raw), model["cells"](features)


def _fit_forest(features: np.ndarray, labels: np.ndarray, seed: int, rows: np.ndarray,
                n_classes: int) -> tuple[Any, np.ndarray]:
    """A forest on `labels` (0 .. n_classes - 1) and the out-of-bag votes of `rows`,
    (len(rows), n_classes) (cross-fitted without refitting; computed for those rows only,
    which is what keeps challenge scale fast)."""
    from sklearn.ensemble._forest import _generate_unsampled_indices

    from federation.baselines import anomaly_forest

    forest = anomaly_forest(seed=seed, n_rows=len(labels)).fit(features, labels)
    position = np.full(len(labels), -1)
    position[rows] = np.arange(len(rows))
    total, votes = np.zeros((len(rows), n_classes)), np.zeros(len(rows))
    for tree in forest.estimators_:
        # sklearn's own out-of-bag bookkeeping (pinned sklearn 1.9.1).
        unsampled = _generate_unsampled_indices(tree.random_state, len(labels),
                                                forest._n_samples_bootstrap, None)
        hit = position[unsampled]
        hit = hit[hit >= 0]
        total[np.ix_(hit, forest.classes_)] += tree.predict_proba(features[rows[hit]])
        votes[hit] += 1
    return forest, total / np.maximum(votes, 1)[:, None]
