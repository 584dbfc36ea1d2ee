"""Empirical attacks run by the audit, each reported beside the bound that the accounted
epsilon implies.

- Attribute inference on each bank's per-account status from exactly what the PNS received
  at inference (the reported statuses, read from the recorded bytes), scored per account
  against the true status from the bank's own records. An epsilon-DP release bounds any
  test between two values of one account's status: TPR <= e^eps FPR + delta and
  1 - FPR <= e^eps (1 - TPR) + delta, so advantage (TPR - FPR) <= (e^eps - 1 + 2 delta) /
  (e^eps + 1), and the ROC curve lies under that envelope (the AUC bound).
- Membership inference on the released noisy table: the likelihood-ratio attack of an
  adversary who knows every other account's contribution, replayed with the Skellam noise
  the banks recorded (variance, sensitivity), on many neighbouring pairs; TPR at low FPR
  against TPR <= e^eps FPR + delta. Whatever the PNS's final model does with the table is
  post-processing of it, so this attack bounds membership through the model's status part.
- Membership inference on the PNS's own forest (training rows against test rows, by the
  model's confidence in the true label). The forest is the PNS's own data, trained in the
  clear: no DP bound applies, and the figure shows what a reader of the model would learn.
- For LLM run directories: privleak in open-unlearning's convention, from the forget and
  holdout scores of the model and of the retain-only model (`mia_scores.json`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from federation.audit_checks import RunContext, received_statuses
from federation.errors import Pv4fadError
from federation.messages import PNS_ID
from federation.transcript import TranscriptEntry

LOW_FPR = (0.001, 0.01)
MIA_SCORES = "mia_scores.json"


# -- bounds ----------------------------------------------------------------------------------
def advantage_bound(eps: float, delta: float = 0.0) -> float:
    if math.isinf(eps) or eps > 700:
        return 1.0
    return min(1.0, (math.expm1(eps) + 2 * delta) / (math.exp(eps) + 1))


def roc_envelope(fpr: np.ndarray, eps: float, delta: float = 0.0) -> np.ndarray:
    """The highest TPR at each FPR that an (eps, delta)-DP release allows."""
    e = math.exp(min(eps, 700.0))
    return np.clip(np.minimum(e * fpr + delta, 1 - (1 - fpr - delta) / e), 0, 1)


def auc_bound(eps: float, delta: float = 0.0) -> float:
    grid = np.linspace(0, 1, 20001)
    return float(np.trapezoid(roc_envelope(grid, eps, delta), grid))


def roc(scores_pos: np.ndarray, scores_neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC points (FPR, TPR) over every threshold, ties handled as sklearn does."""
    from sklearn.metrics import roc_curve

    y = np.r_[np.ones(len(scores_pos)), np.zeros(len(scores_neg))]
    fpr, tpr, _ = roc_curve(y, np.r_[scores_pos, scores_neg])
    return fpr, tpr


def _summary(fpr: np.ndarray, tpr: np.ndarray, n_pos: int, n_neg: int) -> dict[str, Any]:
    adv_i = int(np.argmax(tpr - fpr))
    t, f = float(tpr[adv_i]), float(fpr[adv_i])
    se = math.sqrt(t * (1 - t) / max(n_pos, 1) + f * (1 - f) / max(n_neg, 1))
    out = {"auc": float(np.trapezoid(tpr, fpr)), "advantage": t - f, "advantage_se": se,
           "n_positive": n_pos, "n_negative": n_neg}
    for low in LOW_FPR:
        ok = fpr <= low
        out[f"tpr_at_fpr_{low:g}"] = float(tpr[ok].max()) if ok.any() else 0.0
    # A thinned curve for the report's plot.
    keep = np.unique(np.r_[0, np.linspace(0, len(fpr) - 1, min(len(fpr), 200)).astype(int)])
    out["curve"] = {"fpr": [round(float(x), 5) for x in fpr[keep]],
                    "tpr": [round(float(x), 5) for x in tpr[keep]]}
    return out


# -- 1. attribute inference at inference time ----------------------------------------------
def _true_statuses(run_dir: Path, summary: dict[str, Any], bank: str, stage: str = "test"
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The true reported-scale status and the account of each row the PNS asked `bank`
    about (the auditor's ground truth: the run's data and the PNS's routing)."""
    import pandas as pd

    from clients.pns import QUERY_COLUMNS
    from federation.data.loader import load_bank_client
    from federation.features import ACCOUNT_IDENTITY, beneficiary_status, reported_status

    pns = run_dir / "parties" / PNS_ID / stage
    linkage = pns / f"linkage_{bank}.npz"
    if not linkage.is_file() or not summary.get("data_root"):
        return None
    with np.load(linkage) as data:
        idx = data["rows"]
    rows = pd.read_parquet(pns / "rows.parquet").iloc[idx]
    queries = pd.DataFrame({a: rows[q].to_numpy(dtype=object)
                            for q, a in QUERY_COLUMNS.items()})
    accounts = load_bank_client(summary["data_root"], summary["scenario"], stage, bank)
    own = accounts[[*ACCOUNT_IDENTITY, "Flags"]]
    detail = summary.get("config", {}).get("status_detail", "coarse")
    true = reported_status(beneficiary_status(own, queries), detail)
    question = queries.astype(str).agg("\x1f".join, axis=1).to_numpy(dtype=object)
    return np.asarray(true), queries["Account"].to_numpy(dtype=object), question


def _pns_views(entries: Sequence[TranscriptEntry], ctx: RunContext, run_dir: Path
               ) -> list[tuple[str, str | None, np.ndarray, str]]:
    """What the PNS holds about each bank's queried rows at inference: the reported
    statuses it received (score mode, from the recorded bytes) or the flags the two-party
    computation gave it (label mode, from its state)."""
    views: list[tuple[str, str | None, np.ndarray, str]] = []
    for e, values in received_statuses(entries, ctx.store):
        if e.message_type.startswith("test.") and values is not None:
            views.append((e.sender, e.run, np.asarray(values), "statuses"))
    seen = {v[0] for v in views}
    for path in sorted((run_dir / "parties" / PNS_ID / "test").glob("flags_*.npz")):
        bank = path.stem.removeprefix("flags_")
        if bank not in seen:
            with np.load(path) as data:
                views.append((bank, None, data["flags"].astype(np.int64), "flags"))
    return views


def attribute_inference(entries: Sequence[TranscriptEntry], ctx: RunContext,
                        run_dir: Path | None, summary: dict[str, Any]) -> dict[str, Any]:
    """Per account: score = share of its reported statuses that are 'flagged' (any non-zero
    status); truth = its true status is non-zero. Bound at the worst account's epsilon."""
    out: dict[str, Any] = {"name": "status_attribute_inference",
                           "title": "Attribute inference on account status (what the PNS "
                                    "received)",
                           "within_bound": None, "per_bank": {}}
    if run_dir is None:
        out["summary"] = "not run: needs the run's data for ground truth (a run directory)"
        return out
    pos_all: list[float] = []
    neg_all: list[float] = []
    eps_all: list[float] = []
    import pandas as pd

    for bank, run, values, kind in _pns_views(entries, ctx, run_dir):
        truth = _true_statuses(run_dir, summary, bank)
        # The bound is the one the accountant claims: the epsilon of the bank's recorded
        # randomized-response release in this run (a forged entry shows up as a violation).
        claimed = [float(r.details["noise_scale"]) for r in entries
                   if r.direction == "release" and r.recorder == bank
                   and (run is None or r.run == run)
                   and r.details.get("mechanism") == "randomized_response"]
        if truth is None or not claimed:
            continue
        eps_question = max(claimed)
        true, account, questions = truth
        if len(true) != len(values):
            raise Pv4fadError(f"audit: the PNS's {kind} from {bank} has {len(values)} rows, "
                              f"it asked {len(true)}")
        ok = values >= 0
        frame = pd.DataFrame({"account": account[ok], "question": questions[ok],
                              "flag": (values[ok] > 0).astype(float),
                              "true": (true[ok] > 0).astype(int)})
        if kind == "statuses":
            # One answer per distinct question (account with its details): a repeated
            # question gets the kept answer again, so only distinct ones add evidence.
            frame = frame.drop_duplicates(["account", "question"])
        per = frame.groupby("account").agg(score=("flag", "mean"), true=("true", "max"))
        # Epsilon: the account's distinct questions, each answered once by randomized
        # response; a label-mode flag is a function of those answers (post-processing).
        per["n"] = frame.drop_duplicates(["account", "question"]).groupby("account").size()
        eps = per["n"].to_numpy() * eps_question
        pos, neg = per.loc[per["true"] == 1, "score"], per.loc[per["true"] == 0, "score"]
        if len(pos) and len(neg):
            # Each bank against its own claimed bound (one bank's forged entry must not
            # hide behind another's looser one).
            fpr, tpr = roc(pos.to_numpy(), neg.to_numpy())
            s = _summary(fpr, tpr, len(pos), len(neg))
            s.pop("curve")
            # A label-mode flag also carries the PNS's own evidence about the row, which
            # no bank's epsilon bounds: reported beside the bound, not held to it.
            within = (_under_envelope(fpr, tpr, float(eps.max()), 0.0, len(pos), len(neg))
                      if kind == "statuses" else None)
            out["per_bank"][bank] = {
                **s, "view": kind, "epsilon_max": float(eps.max()),
                "bound": advantage_bound(float(eps.max())), "within_bound": within}
        pos_all += pos.tolist()
        neg_all += neg.tolist()
        eps_all += eps.tolist()
    if not pos_all or not neg_all:
        out["summary"] = "not run: no reported statuses with both flagged and unflagged accounts"
        return out
    eps = float(max(eps_all))
    fpr, tpr = roc(np.asarray(pos_all), np.asarray(neg_all))
    s = _summary(fpr, tpr, len(pos_all), len(neg_all))
    bound = advantage_bound(eps)
    out.update(s, epsilon=eps, bound=round(bound, 6), auc_bound=auc_bound(eps),
               within_bound=_all_within(out["per_bank"].values()),
               summary=f"advantage {s['advantage']:.3f} (AUC {s['auc']:.3f}) over "
                       f"{len(pos_all) + len(neg_all)} accounts; epsilon {eps:g} allows "
                       f"advantage {bound:.4f}")
    return out


def _all_within(banks: Any) -> bool | None:
    """Every bank held to a bound stays within it (None when none is held to one)."""
    verdicts = [b["within_bound"] for b in banks if b["within_bound"] is not None]
    return all(verdicts) if verdicts else None


def _under_envelope(fpr: np.ndarray, tpr: np.ndarray, eps: float, delta: float, n_pos: int,
                    n_neg: int, level: float = 0.999) -> bool:
    """No ROC point is significantly above the DP envelope: for each point the lower
    Clopper-Pearson limit of its TPR stays under the envelope at the upper limit of its FPR
    (a finite sample of an attack that meets the bound exactly must not fail the audit)."""
    from scipy.stats import beta

    a = (1 - level) / 2
    k_pos, k_neg = np.round(tpr * n_pos), np.round(fpr * n_neg)
    tpr_low = np.where(k_pos > 0, beta.ppf(a, k_pos, n_pos - k_pos + 1), 0.0)
    fpr_high = np.where(k_neg < n_neg, beta.ppf(1 - a, k_neg + 1, n_neg - k_neg), 1.0)
    return bool(np.all(tpr_low <= roc_envelope(fpr_high, eps, delta) + 1e-12))


# -- 2. membership inference on the released noisy table ------------------------------------
def table_membership(ctx: RunContext, budget: Sequence[dict[str, Any]], trials: int = 200_000,
                     seed: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {"name": "noisy_table_membership",
                           "title": "Membership inference on the released noisy table "
                                    "(likelihood-ratio attack)", "within_bound": None}
    sums = [r for r in budget if r["party"] == PNS_ID and r["mechanism"] == "skellam"]
    if not sums:
        out["summary"] = "not run: no released table in this ledger"
        return out
    r = sums[-1]
    variance, l2 = float(r["noise_scale"]), float(r["sensitivity"])
    l1 = float(r.get("l1_sensitivity") or l2**2)
    cells = max(1, round(l1**2 / l2**2))  # replace-one moves l1/cells in each of `cells`
    shift = l1 / cells
    rng = np.random.default_rng(seed)  # attack simulation, not key material
    mu = variance / 2

    def noise() -> np.ndarray:
        return (rng.poisson(mu, (trials, cells)) - rng.poisson(mu, (trials, cells))).sum(1)

    # The optimal test for a known shift: the observed cells minus everyone else's counts.
    out_world, in_world = noise().astype(float), noise() + shift * cells
    fpr, tpr = roc(in_world, out_world)
    s = _summary(fpr, tpr, trials, trials)
    eps, delta = float(r["epsilon"]), float(r["delta"])
    env_ok = _under_envelope(fpr, tpr, eps, delta, trials, trials)
    bounds = {f"tpr_bound_at_fpr_{f:g}": float(roc_envelope(np.array([f]), eps, delta)[0])
              for f in LOW_FPR}
    out.update(s, **bounds, epsilon=eps, delta=delta, variance=variance, sensitivity=l2,
               bound=round(advantage_bound(eps, delta), 6), auc_bound=auc_bound(eps, delta),
               within_bound=bool(env_ok),
               summary=f"TPR {s['tpr_at_fpr_0.001']:.4f} at FPR 0.001 (bound "
                       f"{bounds['tpr_bound_at_fpr_0.001']:.4f}), advantage "
                       f"{s['advantage']:.3f}; epsilon {eps:.3g} at delta {delta:g}")
    return out


# -- 3. membership inference on the PNS's own model -----------------------------------------
def model_membership(run_dir: Path | None, summary: dict[str, Any], limit: int = 3000,
                     seed: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {"name": "pns_model_membership",
                           "title": "Membership inference on the PNS's forest (no DP: the "
                                    "PNS's own data)", "within_bound": None, "bound": None}
    model_path = run_dir / "parties" / PNS_ID / "pns_model.pkl" if run_dir else None
    if model_path is None or not model_path.is_file() or not summary.get("data_root"):
        out["summary"] = "not run: no PNS model and data in this run directory"
        return out
    import pickle

    from federation.data.loader import load_transactions
    from federation.status_model import N_CLASSES

    with model_path.open("rb") as fh:  # the run's own file, written by the PNS
        model = pickle.load(fh)
    rng = np.random.default_rng(seed)
    conf = {}
    for stage in ("train", "test"):
        tx = load_transactions(summary["data_root"], summary["scenario"], stage)
        if "Label" not in tx:
            out["summary"] = f"not run: the {stage} transactions carry no labels"
            return out
        # Features over the whole stage (history features need every row), the forest on
        # a sample of rows.
        features = model["featurizer"].transform(tx)
        rows = (np.sort(rng.choice(len(tx), limit, replace=False)) if len(tx) > limit
                else np.arange(len(tx)))
        forest = model["forest"]
        raw = np.zeros((len(rows), N_CLASSES))
        raw[:, forest.classes_] = forest.predict_proba(features[rows])
        p_anomaly = np.clip(model["calibration"](raw).sum(axis=1), 0, 1)
        label = tx["Label"].to_numpy()[rows]
        conf[stage] = np.where(label == 1, p_anomaly, 1 - p_anomaly)
    fpr, tpr = roc(conf["train"], conf["test"])
    s = _summary(fpr, tpr, len(conf["train"]), len(conf["test"]))
    out.update(s, summary=f"TPR {s['tpr_at_fpr_0.01']:.3f} at FPR 0.01, AUC {s['auc']:.3f} "
                          "(training rows vs test rows)")
    return out


# -- 4. LLM runs: privleak ---------------------------------------------------------------------
def privleak(model_forget: Sequence[float], model_holdout: Sequence[float],
             retain_forget: Sequence[float], retain_holdout: Sequence[float]) -> dict[str, Any]:
    """open-unlearning's privleak: AUC' = 1 - AUC of telling forget (members) from holdout
    by score, (AUC'_model - AUC'_retain) / AUC'_retain x 100; 0 is ideal, negative means
    the model still tells its forget set apart more than a model that never saw it."""
    from sklearn.metrics import roc_auc_score

    def auc(forget: Sequence[float], holdout: Sequence[float]) -> float:
        y = [1] * len(forget) + [0] * len(holdout)
        return float(roc_auc_score(y, [*forget, *holdout]))

    a_model = 1 - auc(model_forget, model_holdout)
    a_retain = 1 - auc(retain_forget, retain_holdout)
    return {"auc_model": 1 - a_model, "auc_retain": 1 - a_retain,
            "privleak": (a_model - a_retain) / a_retain * 100.0}


def llm_privleak(run_dir: Path | None) -> dict[str, Any] | None:
    path = run_dir / MIA_SCORES if run_dir else None
    if path is None or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        m, r = data["model"], data.get("retain_model")
        if r is None:  # no retain-only model: the model's own AUC, no privleak
            values = privleak(m["forget"], m["holdout"], m["forget"], m["holdout"])
            values.update(auc_retain=None, privleak=None)
            return {"name": "llm_forget_membership", "title": "Membership inference on the "
                    "forget set", "within_bound": None, "bound": None, **values,
                    "summary": f"AUC {values['auc_model']:.3f} (no retain-only model "
                               "scores: privleak needs them)"}
        values = privleak(m["forget"], m["holdout"], r["forget"], r["holdout"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise Pv4fadError(f"audit: {path}: expected model/retain_model forget and holdout "
                          f"scores ({exc})") from exc
    return {"name": "llm_forget_membership", "title": "Membership inference on the forget "
            "set (privleak, open-unlearning convention)", "within_bound": None, "bound": None,
            **values, "summary": f"privleak {values['privleak']:.1f} % (AUC model "
                                 f"{values['auc_model']:.3f}, retain-only "
                                 f"{values['auc_retain']:.3f})"}


def run_attacks(entries: Sequence[TranscriptEntry], ctx: RunContext, run_dir: Path | None,
                summary: dict[str, Any]) -> list[dict[str, Any]]:
    from federation.audit_checks import dp_budget

    attacks = [attribute_inference(entries, ctx, run_dir, summary),
               table_membership(ctx, dp_budget(entries, ctx)),
               model_membership(run_dir, summary)]
    llm = llm_privleak(run_dir)
    if llm is not None:
        attacks.append(llm)
    return attacks
