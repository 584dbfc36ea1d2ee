"""What the payment network (PNS, client id `swift`) does and sends, phase by phase.

The PNS holds the transactions and labels. It trains its random forest on its own features
in the clear, and learns about the banks' records only through:
- training: DP-noised joint counts (cell x class x reported bank status), summed over banks
  by secure aggregation, from which it builds the status-aware table
  (federation/status_model.py). It reads them by decrypting, with its own CKKS key (fresh
  for every training stage), one coefficient of each bank's reply;
- inference: each test row's status as the bank reports it (randomized response, drawn
  once per question); it adds the status's evidence to its forest's own.
What it sends: keyed hashes of beneficiary identities (linkage) and, at training, its
rows' groups (cell x class) encrypted under its own key, which no bank can read.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clients.backends import BadReply
from clients.party import Party
from crypto.linkage import keyed_hashes, linkage_key
from federation.config import ProtocolConfig
from federation.errors import ProtocolError, Pv4fadError
from federation.features import ACCOUNT_IDENTITY, IDENTITY_COLUMNS
from federation.messages import (
    AGGREGATE,
    FINISH,
    LABEL,
    LINKAGE,
    NOISE,
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
# The transaction columns the PNS uses (features, linkage, labels); the others (the
# ordering party's name and address, the transaction reference) are not kept in memory.
PNS_COLUMNS: tuple[str, ...] = (
    "MessageId", "UETR", "Timestamp", "Sender", "Receiver", "OrderingAccount",
    *IDENTITY_COLUMNS, "SettlementDate", "SettlementCurrency", "SettlementAmount",
    "InstructedCurrency", "InstructedAmount", "Label",
)


class PaymentNetwork(Party):
    role = "pns"

    # 1. setup: validate own data; train the forest (training) or score with it (test).
    def setup(self) -> Envelope:
        from federation.data.loader import load_transactions, release_freed_memory
        from federation.features import final_receiver

        tx = load_transactions(self.settings.data_root, self.settings.scenario, self.stage,
                               columns=PNS_COLUMNS)
        receivers = final_receiver(tx)
        rows = tx[["MessageId", *QUERY_COLUMNS]].copy()
        rows["final_receiver"] = receivers
        rows.to_parquet(self.stage_dir() / "rows.parquet", index=False)
        labels = (tx["Label"].to_numpy(dtype=np.int8) if "Label" in tx
                  else np.full(len(tx), -1, dtype=np.int8))
        n_rows = len(tx)
        if self.stage == "train":
            inputs = training_inputs(tx, receivers, self.config)
            del tx, rows, receivers  # the forests need only the features: free the frame
            release_freed_memory()
            trained = fit_model(inputs, labels, self.config)
            self._save_model("pns_model.pkl", trained.model)
            counted, cells, classes = trained.counted, trained.cells, trained.classes
            scores = np.zeros((n_rows, 2))
            scores[counted] = trained.oob_scores
        else:
            model = self._load_model("pns_model.pkl")
            scores, cells = model_scores(model, tx)
            counted, classes = np.arange(n_rows), np.full(n_rows, -1, dtype=np.int8)
        self.save_arrays("scores", score=scores, cell=cells, label=labels, klass=classes,
                         counted=counted)
        if self.stage == "train":  # a fresh CKKS key pair for this training stage
            (self.stage_dir() / "ckks_public.bin").write_bytes(
                self.backend.new_pns_key(self.stage_dir()))
        return self.reply(SETUP, public={"n_rows": n_rows})

    # 2. linkage: route rows to the bank holding the beneficiary; send keyed hashes (and,
    # at training, the encrypted groups of the counted rows).
    def linkage(self) -> Envelope:
        banks = json.loads(str(self.envelope.public["banks_json"]))
        code_to_bank = {code: bank for bank, info in banks.items() for code in info["codes"]}
        rows = _read_rows(self.stage_dir())
        receiver, receivers = pd.factorize(rows["final_receiver"])
        bank_of = np.array([code_to_bank.get(r) for r in receivers] + [None], dtype=object)
        route = pd.Series(bank_of[receiver])  # code -1 (none) -> None
        arrays = self.load_arrays("scores")
        counted = np.zeros(len(rows), dtype=bool)
        counted[arrays["counted"]] = True
        groups = arrays["cell"].astype(np.int64) * N_CLASSES + arrays["klass"]
        sealed: dict[str, bytes] = {}
        for bank in banks:
            idx = np.flatnonzero((route == bank).to_numpy() & counted)
            identities = rows.iloc[idx]
            key = linkage_key(self.identity, self.peer_public(bank), self.id, bank)
            request: dict[str, Any] = {target: keyed_hashes(identities[source], key, target)
                                       for source, target in QUERY_COLUMNS.items()}
            classes = {name: PayloadClass.KEYED_HASH for name in request}
            if self.stage == "train" and len(idx):
                request["groups"] = self.backend.encrypt_groups(
                    self.stage_dir(), groups[idx], N_CLASSES * self.config.n_cells)
                request["pns_public"] = (self.stage_dir() / "ckks_public.bin").read_bytes()
                classes.update(groups=self.backend.groups_class, pns_public=PayloadClass.PUBLIC)
            self.save_arrays(f"linkage_{bank}", rows=idx)
            sealed[bank] = self.seal_for(bank, LINKAGE, request, classes)
        unrouted = int(route.isna().sum())
        return self.reply(LINKAGE, public={"unrouted_rows": unrouted}, sealed=sealed)

    # 3. aggregate (training): sum the banks' replies, build the status-aware table. A bank
    # whose reply cannot be opened is named; the coordinator then retries without it.
    def aggregate(self) -> Envelope:
        from crypto.accountant import PrivacyAccountant, Release

        participants = [str(p) for p in self.envelope.public["participants"]]
        replies, bad = {}, {}
        for bank in participants:
            try:
                replies[bank] = self.open_from(bank, NOISE, self.envelope.sealed[bank], {
                    "counts": self.backend.counts_class, "unanswered": PayloadClass.PUBLIC,
                    "params": PayloadClass.PUBLIC})
            except Pv4fadError as exc:
                bad[bank] = str(exc)
        params = {json.dumps(r["params"], sort_keys=True) for r in replies.values()}
        if len(params) > 1:
            bad.update({b: "noise parameters differ from the other banks'" for b in replies})
        if bad:
            return self.reply(AGGREGATE, public={"bad_payloads": json.dumps(bad)})
        noise = json.loads(params.pop())
        n_groups, n_columns = N_CLASSES * self.config.n_cells, self.config.n_statuses - 1
        try:
            noisy = self.backend.counts(self.stage_dir(), {
                bank: r["counts"] for bank, r in replies.items()}, n_groups, n_columns)
        except BadReply as exc:
            return self.reply(AGGREGATE, public={"bad_payloads": json.dumps(
                {exc.bank: exc.reason})})
        arrays = self.load_arrays("scores")
        counted = arrays["counted"]
        position = np.full(len(arrays["cell"]), -1)
        position[counted] = np.arange(len(counted))
        answered = []
        for bank in participants:
            rows = self.load_arrays(f"linkage_{bank}")["rows"]
            answered.append(np.delete(rows, np.asarray(replies[bank]["unanswered"], int)))
        table = StatusTable.from_noisy_counts(
            noisy.reshape(self.config.n_cells, N_CLASSES, n_columns),
            arrays["cell"][counted], arrays["klass"][counted],
            position[np.concatenate(answered)], noise_variance=float(noise["variance"]))
        self.save_json("status_table.json", table.to_json())
        accountant = PrivacyAccountant(ledger=self.ledger)
        accountant.record(Release(
            mechanism="skellam", sensitivity=noise["l2"], l1_sensitivity=noise["l1"],
            noise_scale=noise["variance"], releasing_party="+".join(participants),
            released="joint counts (secure sum over banks)", phase=AGGREGATE,
            round=self.round))
        return self.reply(AGGREGATE, public={
            "training_epsilon": accountant.epsilon(self.config.delta),
            "training_delta": self.config.delta, "banks_in_table": participants})

    # 4. label (inference, label mode): a two-party CrypTen computation with one bank; the
    # PNS learns one flag per row, not the bank's statuses.
    def label(self) -> Envelope:
        from scipy.special import logit

        from crypto.mpc import run_party

        bank = str(self.envelope.public["bank"])
        table = StatusTable.from_json(self.load_json("status_table.json"))
        arrays = self.load_arrays("scores")
        rows = self.load_arrays(f"linkage_{bank}")["rows"]
        scores, cells = arrays["score"][rows], arrays["cell"][rows]
        inputs = {"base": table.forest_log_odds(scores, cells),
                  "evidence": table.status_evidence(scores, cells)}
        try:
            result = run_party("pns", str(self.envelope.public["rendezvous"]), inputs,
                               float(logit(self.config.label_threshold)), self.config.timeout_s)
        except ProtocolError as exc:
            return self.reply(LABEL, public={"label_failed": str(exc)})
        self.save_arrays(f"flags_{bank}", flags=result.flags)
        self.ledger.record(
            direction="exchanged", round=self.round, phase=LABEL, sender=self.id,
            receiver=bank, message_type=f"{self.stage}.{LABEL}", nbytes=result.bytes_sent,
            fields={"shares": PayloadClass.SECRET_SHARE, "flags": self._status_class()},
            details={"rounds": result.rounds, "seconds": round(result.seconds, 3)})
        return self.reply(LABEL, public={"flagged": int(result.flags.sum())})

    # 5. finish (inference): in score mode the reported statuses' evidence plus the forest's,
    # in label mode the flags; rows without a bank answer keep the forest's evidence alone.
    def finish(self) -> Envelope:
        if self.config.inference_mode == "labels":
            return self._finish_labels([str(b) for b in self.envelope.public["label_banks"]])
        return self._finish_scores()

    def _status_class(self) -> PayloadClass:
        return (PayloadClass.DP_NOISED if self.config.inference_epsilon is not None
                else PayloadClass.PLAINTEXT)

    def _finish_scores(self) -> Envelope:
        from sklearn.metrics import average_precision_score

        table = StatusTable.from_json(self.load_json("status_table.json"))
        arrays = self.load_arrays("scores")
        cells, labels = arrays["cell"], arrays["label"]
        evidence = np.zeros(len(cells))
        answered = np.zeros(len(cells), dtype=bool)
        for bank, blob in self.envelope.sealed.items():
            reported = np.asarray(self.open_from(bank, STATUS, blob, {
                "status": self._status_class()})["status"], dtype=np.int64)
            rows = self.load_arrays(f"linkage_{bank}")["rows"]
            if reported.shape != rows.shape or reported.max(initial=-1) >= self.config.n_statuses:
                raise ProtocolError(f"{self.id}: status reply of {bank} does not fit its "
                                    f"{len(rows)} queried rows")
            ok = reported >= 0
            per_status = table.status_evidence(arrays["score"][rows[ok]], cells[rows[ok]])
            evidence[rows[ok]] = per_status[np.arange(ok.sum()), reported[ok]]
            answered[rows[ok]] = True
        final = combined_scores(table.forest_log_odds(arrays["score"], cells), evidence)
        public = self._predictions("Score", final, answered)
        if (labels >= 0).all() and labels.any():
            public["auprc"] = float(average_precision_score(labels, final))
            public["auprc_pns_only"] = float(average_precision_score(
                labels, arrays["score"].sum(axis=1)))
        return self.reply(FINISH, public=public)

    def _finish_labels(self, banks: list[str]) -> Envelope:
        from scipy.special import logit

        table = StatusTable.from_json(self.load_json("status_table.json"))
        arrays = self.load_arrays("scores")
        labels = arrays["label"]
        flags = table.forest_log_odds(arrays["score"], arrays["cell"]) > logit(
            self.config.label_threshold)
        answered = np.zeros(len(flags), dtype=bool)
        for bank in banks:
            rows = self.load_arrays(f"linkage_{bank}")["rows"]
            flags[rows] = self.load_arrays(f"flags_{bank}")["flags"]
            answered[rows] = True
        public = self._predictions("Flag", flags.astype(np.int8), answered)
        public["flagged"] = int(flags.sum())
        if (labels >= 0).all() and labels.any():
            hits = int((flags & (labels == 1)).sum())
            public["precision"] = hits / max(int(flags.sum()), 1)
            public["recall"] = hits / int((labels == 1).sum())
        return self.reply(FINISH, public=public)

    def _predictions(self, column: str, values: np.ndarray, answered: np.ndarray
                     ) -> dict[str, Any]:
        rows = _read_rows(self.stage_dir(), columns=["MessageId"])
        out = self.stage_dir() / "predictions.csv"
        pd.DataFrame({"MessageId": rows["MessageId"], column: values}).to_csv(out, index=False)
        return {"predictions": str(out), "rows": len(values),
                "rows_without_bank_answer": int((~answered).sum())}

    # -- helpers -----------------------------------------------------------------------
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


@dataclass(frozen=True)
class TrainingInputs:
    """What the PNS's training needs from its transactions: the fitted featurizer, the
    training rows' features (float32) and the rows that enter the joint counts."""

    featurizer: Any
    features: np.ndarray
    counted: np.ndarray


def train_model(tx: pd.DataFrame, receivers: Any, labels: np.ndarray,
                config: ProtocolConfig) -> Trained:
    """The PNS's own training (`training_inputs`, then `fit_model`)."""
    return fit_model(training_inputs(tx, receivers, config), labels, config)


def training_inputs(tx: pd.DataFrame, receivers: Any, config: ProtocolConfig
                    ) -> TrainingInputs:
    """Features of the training rows, and at most `max_rows_per_account` random rows per
    beneficiary account to count (this bounds the DP sensitivity)."""
    from federation.features import PNSFeaturizer

    featurizer = PNSFeaturizer()
    # Leave-one-out history features on training rows, as at test time.
    features = featurizer.fit_transform(tx)
    accounts = beneficiary_keys(receivers, tx["BeneficiaryAccount"])
    counted = capped_rows(np.arange(len(tx)), accounts, config.max_rows_per_account,
                          np.random.default_rng(config.seed))
    return TrainingInputs(featurizer, features, counted)


def fit_model(inputs: TrainingInputs, labels: np.ndarray, config: ProtocolConfig) -> Trained:
    """A forest on the labels, whose out-of-bag votes sort the anomalies into explained and
    unexplained; the forest on those classes (the one kept), its calibration, and the
    cells."""
    features, counted = inputs.features, inputs.counted
    anomalies = np.flatnonzero(labels == 1)
    # Only the votes are kept: the first forest is freed before the second is grown.
    votes = _fit_forest(features, labels, config.seed, anomalies, n_classes=2)[1]
    classes = np.full(len(labels), NORMAL, dtype=np.int8)
    classes[anomalies] = anomaly_classes(labels[anomalies], votes[:, 1])
    forest, votes = _fit_forest(features, classes, config.seed, counted, N_CLASSES)
    calibration = ForestCalibration(votes, classes[counted])
    cells = StatusCells(features[counted], classes[counted], config.cell_depth, config.seed)
    model = {"featurizer": inputs.featurizer, "forest": forest, "calibration": calibration,
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


def _read_rows(stage_dir: Path, columns: list[str] | None = None) -> pd.DataFrame:
    """The stage's rows.parquet, its strings kept as Arrow strings (pandas' default makes a
    Python object of each: gigabytes at challenge scale)."""
    return pd.read_parquet(stage_dir / "rows.parquet", columns=columns, dtype_backend="pyarrow")
