"""How a bank answers status questions: once per question, within a lifetime budget.

A question is one queried identity (account, name, street, address, as keyed-hash tags
under the bank's stable pairwise key with the PNS). The bank answers it with its status
passed through k-ary randomized response at its policy's `status_epsilon`, with the
randomness derived from a secret key of its own and the question (and the true status),
so the same question always gets the same answer: at inference, inside the encrypted
training counts, in every later run. Nothing the PNS or the coordinator does (asking
again, in another run, amplifying rows inside the encrypted counts, replaying) yields
more than these answers. Each account may be asked at most
lifetime_account_epsilon / status_epsilon distinct questions over its life; further new
questions are not answered (which depends only on what the PNS itself asked).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from federation.policy import PrivacyPolicy

QUESTIONS_FILE = "status_questions.npz"
RR_KEY_FILE = "status_rr.key"
UNANSWERED = -1


@dataclass(frozen=True)
class Answers:
    """reported: the status code reported per row, UNANSWERED where the account's budget
    is spent. questions_max: distinct questions asked so far (all runs) about the most
    asked account among this request's; new_questions: questions first asked now."""

    reported: np.ndarray
    questions_max: int
    new_questions: int

    @property
    def unanswered(self) -> np.ndarray:
        return np.flatnonzero(self.reported == UNANSWERED)


def question_keys(tags: pd.DataFrame) -> np.ndarray:
    """One 16-byte key per row from its identity tags (the columns of `tags`)."""
    joined = tags.to_numpy(dtype=object)
    return np.array([hashlib.blake2b(b"".join(bytes(t) for t in row), digest_size=16,
                                     person=b"pv4fad-question").digest() for row in joined],
                    dtype="S16")


class StatusAnswers:
    """The bank's persistent answering state in its own directory."""

    def __init__(self, state: Path, policy: PrivacyPolicy, n_statuses: int) -> None:
        self.state = state
        self.policy = policy
        self.n_statuses = n_statuses

    def _rr_key(self) -> bytes:
        path = self.state / RR_KEY_FILE
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(os.urandom(32))
        return path.read_bytes()

    def _asked(self) -> pd.DataFrame:
        path = self.state / QUESTIONS_FILE
        if not path.exists():
            return pd.DataFrame({"account": np.array([], "S16"), "question": np.array([], "S16")})
        with np.load(path, allow_pickle=False) as data:
            return pd.DataFrame({"account": data["account"], "question": data["question"]})

    def answer(self, accounts: np.ndarray, questions: np.ndarray, true_status: np.ndarray
               ) -> Answers:
        """Answers per row; records the new questions (the state file is replaced
        atomically, so an interrupted call loses nothing already recorded)."""
        from crypto.dp import keyed_randomized_response

        asked = self._asked()
        rows = pd.DataFrame({"account": accounts, "question": questions})
        new = rows.drop_duplicates("question")
        new = new[~new["question"].isin(asked["question"])]
        limit = self.policy.max_questions_per_account
        if limit is not None:
            before = asked.groupby("account").size()
            rank = new.groupby("account").cumcount() + new["account"].map(before).fillna(0)
            new = new[rank.to_numpy() < limit]
        known = pd.concat([asked, new], ignore_index=True)
        answered = rows["question"].isin(known["question"]).to_numpy()
        reported = np.full(len(rows), UNANSWERED, dtype=np.int8)
        if self.policy.status_epsilon is None:
            reported[answered] = true_status[answered]
        elif answered.any():
            draw_keys = [bytes(q) + bytes([int(s)]) for q, s in
                         zip(questions[answered], true_status[answered], strict=True)]
            reported[answered] = keyed_randomized_response(
                true_status[answered].astype(np.int64), draw_keys, self.n_statuses,
                self.policy.status_epsilon, self._rr_key())
        self._save(known)
        counts = known.groupby("account").size()
        touched = counts.reindex(pd.unique(accounts)).fillna(0)
        return Answers(reported, int(touched.max()) if len(touched) else 0, len(new))

    def _save(self, known: pd.DataFrame) -> None:
        path = self.state / QUESTIONS_FILE
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, account=known["account"].to_numpy(dtype="S16"),
                 question=known["question"].to_numpy(dtype="S16"))
        tmp.replace(path)
