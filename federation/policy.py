"""A party's own privacy policy: what it does whatever the coordinator's messages say.

Every party reads its policy from its node config (a JSON file next to its state), never
from a message. The coordinator's run configuration is only a request: a bank serves it if
it lies within the policy and refuses it otherwise, with one line that names the setting,
recorded in its ledger. The policy also pins the X25519 public key of every party it will
talk to (exchanged out of band); a relayed key that differs is refused, so the coordinator
can neither insert a participant nor stand in for one.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from federation.errors import Pv4fadError

PUBLIC_KEY_HEX = 64  # a raw X25519 public key, hex


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class PolicyRefusal(Pv4fadError):
    """A request outside the party's own policy (or from a party it has not pinned)."""


@dataclass(frozen=True)
class PrivacyPolicy:
    """pinned_keys: party id -> X25519 public key (hex) of every party this one talks to;
      for a bank, its PNS and the other banks it accepts in a secure sum.
    allow_plaintext: serve a run with the cryptography switched off (cost measurements).
    max_training_epsilon, max_training_delta: the most a training release may spend.
    lifetime_training_epsilon: the most all training releases of this party may spend
      together, composed by its accountant across runs.
    status_epsilon: randomized response on every status the bank reports (at inference,
      and inside the encrypted training counts), drawn once per question and kept; None
      reports exact statuses (then nothing bounds a PNS that deviates).
    lifetime_account_epsilon: the most one account may lose over its life: every distinct
      question about it (account with its details) costs status_epsilon.
    max_rows_per_account: training rows per queried account the bank accepts.
    max_groups: the most groups a training table may have.
    """

    pinned_keys: dict[str, str] = field(default_factory=dict)
    allow_plaintext: bool = False
    max_training_epsilon: float = 1.0
    max_training_delta: float = 1e-6
    lifetime_training_epsilon: float = 5.0
    status_epsilon: float | None = 10.0
    lifetime_account_epsilon: float = 30.0
    max_rows_per_account: int = 1
    max_groups: int = 64

    def __post_init__(self) -> None:
        for pid, key in self.pinned_keys.items():
            if not isinstance(key, str) or len(key) != PUBLIC_KEY_HEX or any(
                    c not in "0123456789abcdef" for c in key):
                raise Pv4fadError(f"policy: pinned key of {pid!r} is not 64 lowercase hex "
                                  "digits (a raw X25519 public key)")
        if not isinstance(self.allow_plaintext, bool):
            raise Pv4fadError(f"policy: allow_plaintext must be true or false, got "
                              f"{self.allow_plaintext!r}")
        for name in ("max_training_epsilon", "lifetime_training_epsilon",
                     "lifetime_account_epsilon", "status_epsilon"):
            value = getattr(self, name)
            if value is None and name == "status_epsilon":
                continue
            if not _number(value) or not value > 0 or not math.isfinite(value):
                raise Pv4fadError(f"policy: {name} must be a positive number"
                                  f"{' or null' if name == 'status_epsilon' else ''}, got "
                                  f"{value!r}")
        if self.status_epsilon is not None and (
                self.status_epsilon > self.lifetime_account_epsilon):
            raise Pv4fadError(f"policy: status_epsilon {self.status_epsilon:g} is above "
                              f"lifetime_account_epsilon {self.lifetime_account_epsilon:g}: "
                              "the bank could answer no question")
        if not _number(self.max_training_delta) or not 0 < self.max_training_delta < 1:
            raise Pv4fadError(f"policy: max_training_delta must be in (0, 1), got "
                              f"{self.max_training_delta!r}")
        for name in ("max_rows_per_account", "max_groups"):
            value = getattr(self, name)
            if not _number(value) or value != int(value) or value < 1:
                raise Pv4fadError(f"policy: {name} must be a whole number >= 1, got {value!r}")

    @property
    def max_questions_per_account(self) -> int | None:
        """Distinct questions one account may be asked over its life (None: unbounded,
        when statuses are exact and no budget applies)."""
        if self.status_epsilon is None:
            return None
        return int(self.lifetime_account_epsilon / self.status_epsilon + 1e-9)

    def pinned(self, party: str) -> bytes:
        """The pinned public key of `party`; refuses a party the policy does not know."""
        if party not in self.pinned_keys:
            raise PolicyRefusal(f"policy pins no key for party {party!r}: it is not an "
                                "allowed participant")
        return bytes.fromhex(self.pinned_keys[party])

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=1, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> PrivacyPolicy:
        """Read and validate a policy file; one line naming the file on any problem."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except OSError as exc:
            raise Pv4fadError(f"policy {path}: cannot read ({exc.strerror})") from exc
        except ValueError as exc:
            raise Pv4fadError(f"policy {path}: not valid JSON ({exc})") from exc
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known) if isinstance(data, dict) else []
        if not isinstance(data, dict) or unknown:
            raise Pv4fadError(f"policy {path}: expected a JSON object with keys from "
                              f"{sorted(known)}; unknown: {unknown}")
        try:
            return cls(**data)
        except Pv4fadError as exc:
            raise Pv4fadError(f"{path}: {exc}") from exc
        except TypeError as exc:
            raise Pv4fadError(f"policy {path}: {exc}") from exc
