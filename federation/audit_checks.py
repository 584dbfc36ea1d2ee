"""Content checks of a run: what crossed each boundary, judged from the recorded bytes,
digests and sizes (federation/evidence.py), not from the class the sending code declared.

Each check returns its violations and the evidence it looked at. The DP checks recompute
every release's epsilon from its mechanism parameters (crypto/accountant.py), compare the
accountant's entries with the parameters the banks actually sent, and hold each release
against the releasing bank's own policy and against a reference policy (the protocol's
defaults unless the auditor gives one).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from federation.errors import Pv4fadError
from federation.evidence import AEAD_TAG, EvidenceStore
from federation.messages import COORDINATOR, PNS_ID
from federation.policy import PrivacyPolicy
from federation.transcript import MESSAGE_DIRECTIONS, PayloadClass, TranscriptEntry

# A keyed hash or ciphertext field of this many bytes or more must look random: byte
# entropy above this many bits (uniform bytes give ~8; ASCII identifiers stay below ~6).
RANDOM_MIN_BYTES = 256
RANDOM_MIN_ENTROPY = 7.0
EPS_TOLERANCE = 1e-6


@dataclass
class Check:
    name: str
    title: str
    violations: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.violations

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "passed": self.passed,
                "violations": self.violations, "evidence": self.evidence}


@dataclass
class RunContext:
    """What the checks need besides the ledger."""

    store: EvidenceStore
    policies: dict[str, PrivacyPolicy]  # party -> its own policy (as found)
    reference: PrivacyPolicy  # the auditor's reference limits
    delta: float = 1e-6
    n_statuses: int = 2
    claimed: dict[str, Any] = field(default_factory=dict)  # the run summary's figures


def _boundary(e: TranscriptEntry) -> bool:
    return e.direction in MESSAGE_DIRECTIONS and e.sender != e.receiver


def _peer_to_peer(e: TranscriptEntry) -> bool:
    return COORDINATOR not in (e.sender, e.receiver) and _boundary(e)


def byte_entropy(data: bytes) -> float:
    counts = np.bincount(np.frombuffer(data, dtype=np.uint8), minlength=256)
    p = counts[counts > 0] / len(data)
    return float(-(p * np.log2(p)).sum())


# -- sealed payloads ------------------------------------------------------------------------
def check_sealed(entries: Sequence[TranscriptEntry]) -> Check:
    """Every party-to-party payload, as its receiver recorded it after authenticating it,
    is a ChaCha20-Poly1305 blob addressed to that receiver: clear header naming sender,
    receiver and run, body exactly the payload plus a tag, bytes unlike the payload's."""
    check = Check("sealed_payloads_are_aead_blobs_for_the_recipient",
                  "Party-to-party payloads are AEAD blobs for the stated recipient")
    n = 0
    for e in entries:
        if not (_peer_to_peer(e) and e.direction == "received"):
            continue
        n += 1
        where = f"{e.message_type} {e.sender}->{e.receiver} (recorded by {e.recorder})"
        d = e.details
        if "blob_sha256" not in d:
            check.violations.append(f"{where}: no content evidence recorded")
            continue
        sealed = d.get("sealed")
        if d["blob_sha256"] == d["payload_sha256"] or not sealed:
            check.violations.append(f"{where}: the {e.nbytes}-byte blob is the payload itself "
                                    "(not sealed)")
            continue
        head = sealed.get("header", {})
        wrong = [f"{k}={head.get(k)!r} (stated {v!r})" for k, v in
                 (("sender", e.sender), ("receiver", e.receiver), ("run_id", e.run))
                 if head.get(k) != v]
        if wrong:
            check.violations.append(f"{where}: sealed header {', '.join(wrong)}")
        if sealed.get("body_nbytes") != d["payload_nbytes"] + AEAD_TAG:
            check.violations.append(f"{where}: body {sealed.get('body_nbytes')} bytes, a "
                                    f"sealed {d['payload_nbytes']}-byte payload has "
                                    f"{d['payload_nbytes'] + AEAD_TAG}")
    check.evidence.append(f"{n} party-to-party payloads checked from the receiver's record")
    return check


def check_views_agree(entries: Sequence[TranscriptEntry]) -> Check:
    """Sender, relay and receiver saw the same bytes: every received blob digest is one the
    sender recorded sending and the coordinator recorded relaying, and the payload fields
    have the same digests at both ends."""
    check = Check("sender_relay_and_receiver_saw_the_same_bytes",
                  "Sender, coordinator and receiver record the same digests")
    sent = {e.details["blob_sha256"]: e for e in entries
            if _peer_to_peer(e) and e.direction == "sent" and "blob_sha256" in e.details}
    relayed = {h for e in entries if e.recorder == COORDINATOR
               for h in (e.details.get("relayed_sha256") or {}).values()}
    n = 0
    for e in entries:
        if not (_peer_to_peer(e) and e.direction == "received" and "blob_sha256" in e.details):
            continue
        n += 1
        where = f"{e.message_type} {e.sender}->{e.receiver}"
        digest = e.details["blob_sha256"]
        if digest not in sent:
            check.violations.append(f"{where}: blob {digest[:12]} received, but {e.sender}'s "
                                    "ledger records no such send")
        elif sent[digest].details.get("field_evidence") != e.details.get("field_evidence"):
            check.violations.append(f"{where}: payload fields differ between the two ends")
        if relayed and digest not in relayed:
            check.violations.append(f"{where}: blob {digest[:12]} was not relayed by the "
                                    "coordinator")
    check.evidence.append(f"{n} received blobs matched against {len(sent)} sends and "
                          f"{len(relayed)} relayed blobs")
    return check


# -- field contents -------------------------------------------------------------------------
def _received_fields(entries: Sequence[TranscriptEntry], klass: PayloadClass
                     ) -> list[tuple[TranscriptEntry, str, dict[str, Any]]]:
    out = []
    for e in entries:
        if _peer_to_peer(e) and e.direction == "received":
            for name, info in (e.details.get("field_evidence") or {}).items():
                if e.fields.get(name) == klass.value:
                    out.append((e, name, info))
    return out


def _ckks_context(entries: Sequence[TranscriptEntry], store: EvidenceStore, run: str
                  ) -> Any:
    """The PNS's public CKKS context of a run, from the bytes a bank received."""
    from crypto.ckks_keys import PublicContext

    for e in entries:
        if e.run == run and e.direction == "received":
            info = (e.details.get("field_evidence") or {}).get("pns_public")
            data = store.get(info["sha256"]) if info else None
            if data:
                return PublicContext.from_bytes(data)
    return None


def parse_ckks(data: bytes, context: Any) -> int:
    """Number of SEAL ciphertexts in a framed CKKS payload, each loaded and validated
    under `context`'s parameters; raises on anything else."""
    from crypto import _sealio, framing
    from crypto.ckks import COUNTS_KIND, GROUPS_KIND, SUMS_KIND
    from federation.errors import CryptoError

    try:
        import tenseal.sealapi as seal
    except ImportError as exc:  # pragma: no cover - tenseal is a project dependency
        raise CryptoError("TenSEAL is not installed") from exc
    last: Exception | None = None
    for kind in (GROUPS_KIND, COUNTS_KIND, SUMS_KIND):
        try:
            header, blobs = framing.unpack(data, kind)
        except (CryptoError, ValueError) as exc:
            last = exc
            continue
        if header.get("param_id") != context.params.param_id:
            raise CryptoError(f"{kind}: parameters {header.get('param_id')!r}, the run's "
                              f"context has {context.params.param_id!r}")
        if header.get("key_id") != context.key_id:
            raise CryptoError(f"{kind}: key {header.get('key_id')!r} is not the PNS's")
        if not blobs:
            raise CryptoError(f"{kind}: no ciphertexts")
        for i, blob in enumerate(blobs):
            ct = _sealio.load_into(seal.Ciphertext(), context.suite.context, blob,
                                   f"{kind} ciphertext {i}")
            if ct.size() != 2:
                raise CryptoError(f"{kind} ciphertext {i}: size {ct.size()}, expected 2")
        return len(blobs)
    raise CryptoError(f"not a framed CKKS payload ({last})")


def check_ciphertexts(entries: Sequence[TranscriptEntry], ctx: RunContext) -> Check:
    check = Check("ciphertext_fields_parse_as_ckks_ciphertexts",
                  "Fields declared ciphertext parse as SEAL CKKS ciphertexts under the run's "
                  "parameters")
    contexts: dict[str, Any] = {}
    n_fields = n_cts = 0
    for e, name, info in _received_fields(entries, PayloadClass.CIPHERTEXT):
        where = f"{e.message_type} {e.sender}->{e.receiver} field {name!r}"
        data = ctx.store.get(info["sha256"])
        if data is None:
            check.violations.append(f"{where}: its bytes ({info['sha256'][:12]}) are not in "
                                    "the evidence, so it cannot be verified")
            continue
        if e.run not in contexts:
            try:
                contexts[e.run] = _ckks_context(entries, ctx.store, e.run)
            except Pv4fadError as exc:
                contexts[e.run] = None
                check.violations.append(f"run {e.run}: the PNS's public context does not "
                                        f"parse ({exc})")
        if contexts[e.run] is None:
            check.violations.append(f"{where}: no public CKKS context recorded for run "
                                    f"{e.run}")
            continue
        try:
            n_cts += parse_ckks(data, contexts[e.run])
            n_fields += 1
        except Pv4fadError as exc:
            check.violations.append(f"{where}: declared ciphertext, but {exc} "
                                    f"({len(data)} bytes, entropy "
                                    f"{byte_entropy(data):.2f} bits/byte)")
    check.evidence.append(f"{n_fields} ciphertext fields parsed: {n_cts} SEAL ciphertexts")
    return check


def check_keyed_hashes(entries: Sequence[TranscriptEntry], ctx: RunContext) -> Check:
    check = Check("keyed_hashes_look_random",
                  "Fields declared keyed hashes are fixed-width and look random")
    n = 0
    for e, name, info in _received_fields(entries, PayloadClass.KEYED_HASH):
        where = f"{e.message_type} {e.sender}->{e.receiver} field {name!r}"
        data = ctx.store.get(info["sha256"])
        if data is None:
            check.violations.append(f"{where}: bytes not in the evidence")
            continue
        n += 1
        dtype = str(info.get("dtype") or "")
        if info.get("kind") != "array" or not dtype.startswith("|S"):
            check.violations.append(f"{where}: a {info.get('kind')} of dtype {dtype!r}, "
                                    "not fixed-width tags")
        elif len(data) >= RANDOM_MIN_BYTES and byte_entropy(data) < RANDOM_MIN_ENTROPY:
            check.violations.append(f"{where}: entropy {byte_entropy(data):.2f} bits/byte "
                                    f"(< {RANDOM_MIN_ENTROPY}): readable, not keyed hashes")
    check.evidence.append(f"{n} keyed-hash fields checked")
    return check


def received_statuses(entries: Sequence[TranscriptEntry], store: EvidenceStore
                      ) -> list[tuple[TranscriptEntry, np.ndarray | None]]:
    """Every status array the PNS received (None where its bytes are missing)."""
    out = []
    for e in entries:
        if (_peer_to_peer(e) and e.direction == "received" and e.recorder == PNS_ID
                and "status" in (e.details.get("field_evidence") or {})):
            info = e.details["field_evidence"]["status"]
            data = store.get(info["sha256"])
            values = None
            if data is not None and info.get("dtype"):
                values = np.frombuffer(data, dtype=np.dtype(info["dtype"])).reshape(
                    info.get("shape") or -1)
            out.append((e, values))
    return out


def check_noised(entries: Sequence[TranscriptEntry], ctx: RunContext) -> Check:
    """Statuses the PNS received: the field is declared noised, its sender recorded a
    randomized-response release in that run, and its values are statuses."""
    check = Check("noised_statuses_have_a_release",
                  "Every status the PNS received is covered by a recorded DP release")
    released = {(e.recorder, e.run) for e in entries if e.direction == "release"
                and e.details.get("mechanism") == "randomized_response"}
    n = 0
    for e, values in received_statuses(entries, ctx.store):
        where = f"{e.message_type} {e.sender}->{e.receiver}"
        if e.fields.get("status") != PayloadClass.DP_NOISED.value:
            check.violations.append(f"{where}: statuses sent as {e.fields.get('status')}, "
                                    "without randomized response")
        # -1 marks a row the bank did not answer: only answered statuses need a release.
        answered = values is None or bool((values >= 0).any())
        if answered and (e.sender, e.run) not in released:
            check.violations.append(f"{where}: no randomized-response release by {e.sender} "
                                    f"in run {e.run}")
        if values is None:
            check.violations.append(f"{where}: status bytes not in the evidence")
            continue
        n += int((values >= 0).sum())
        if values.size and (values.min() < -1 or values.max() >= ctx.n_statuses):
            check.violations.append(f"{where}: values outside [-1, {ctx.n_statuses})")
    check.evidence.append(f"{n} answered statuses checked")
    return check


# -- DP releases ------------------------------------------------------------------------------
def release_epsilon(details: Mapping[str, Any], delta: float) -> float:
    """Epsilon of one recorded release, recomputed from its mechanism parameters."""
    from crypto.accountant import PrivacyAccountant, Release

    known = set(Release.__dataclass_fields__)
    release = Release(**{k: v for k, v in details.items() if k in known})
    if release.mechanism == "randomized_response":
        # Pure DP: k-ary RR at epsilon per answer composes additively over the answers
        # (computed directly: the RDP route underflows at very large epsilon).
        if not (release.noise_scale > 0 and math.isfinite(release.noise_scale)
                and release.count >= 1):
            raise Pv4fadError(f"randomized response at epsilon {release.noise_scale!r}, "
                              f"count {release.count!r}")
        return float(release.noise_scale * release.count)
    accountant = PrivacyAccountant()
    accountant.record(release)
    return accountant.epsilon(delta)


def sent_noise_params(entries: Sequence[TranscriptEntry], store: EvidenceStore
                      ) -> dict[tuple[str, str], dict[str, Any]]:
    """(bank, run) -> the noise parameters it put in its sealed reply (as the PNS got it)."""
    out = {}
    for e in entries:
        if (_peer_to_peer(e) and e.direction == "received" and e.recorder == PNS_ID
                and "params" in (e.details.get("field_evidence") or {})):
            data = store.get(e.details["field_evidence"]["params"]["sha256"])
            if data is not None:
                out[(e.sender, e.run)] = json.loads(data)
    return out


def dp_budget(entries: Sequence[TranscriptEntry], ctx: RunContext) -> list[dict[str, Any]]:
    """Every release with its recomputed epsilon (the report's budget table)."""
    rows = []
    for e in entries:
        if e.direction != "release":
            continue
        try:
            eps = release_epsilon(e.details, ctx.delta)
            error = ""
        except (Pv4fadError, TypeError, ValueError) as exc:
            eps, error = math.nan, str(exc)
        rows.append({"party": e.recorder, "run": e.run, "phase": e.phase, "round": e.round,
                     "mechanism": e.details.get("mechanism"),
                     "noise_scale": e.details.get("noise_scale"),
                     "sensitivity": e.details.get("sensitivity"),
                     "count": e.details.get("count", 1),
                     "released": e.details.get("released"), "epsilon": eps,
                     "delta": ctx.delta if e.details.get("mechanism") != "randomized_response"
                     else 0.0, "error": error})
    return rows


def check_releases(entries: Sequence[TranscriptEntry], ctx: RunContext) -> list[Check]:
    recompute = Check("accountant_entries_match_what_was_sent",
                      "Accountant entries recompute, and match the noise the banks sent")
    own = Check("releases_within_each_banks_policy",
                "Every release is within the releasing bank's own policy")
    ref = Check("releases_within_reference_policy",
                "Every release is within the reference policy (protocol defaults unless "
                "given)")
    sent = sent_noise_params(entries, ctx.store)
    budget = dp_budget(entries, ctx)
    for row in budget:
        where = f"{row['party']} {row['phase']} round {row['round']} ({row['mechanism']})"
        if row["error"]:
            recompute.violations.append(f"{where}: does not recompute: {row['error']}")
            continue
        policy = ctx.policies.get(row["party"])
        if (row["mechanism"] == "randomized_response" and policy is not None
                and policy.status_epsilon is not None
                and not math.isclose(float(row["noise_scale"]), policy.status_epsilon)):
            # The bank's code answers at exactly its policy's epsilon (clients/bank.py).
            recompute.violations.append(f"{where}: accountant says statuses at epsilon "
                                        f"{row['noise_scale']:g}; the bank's policy reports "
                                        f"them at {policy.status_epsilon:g}")
        if row["mechanism"] == "skellam" and row["party"] != PNS_ID:
            params = sent.get((row["party"], row["run"]))
            if params is None:
                recompute.violations.append(f"{where}: no noise parameters among what the "
                                            "PNS received from this bank")
            elif (not math.isclose(float(params.get("variance", -1)), float(row["noise_scale"]),
                                   rel_tol=1e-9)
                  or not math.isclose(float(params.get("l2", -1)), float(row["sensitivity"]),
                                      rel_tol=1e-9)):
                recompute.violations.append(
                    f"{where}: accountant says variance {row['noise_scale']:g} at L2 "
                    f"{row['sensitivity']:g}; the bank sent variance "
                    f"{params.get('variance')} at L2 {params.get('l2')}")
        for check, policy, label in ((own, ctx.policies.get(row["party"]), "own policy"),
                                     (ref, ctx.reference, "reference policy")):
            if policy is None:
                if row["party"] != PNS_ID and check is own:
                    check.violations.append(f"{where}: no policy found for {row['party']}")
                continue
            _within(check, policy, row, where, label)
    sums = [r for r in budget if r["mechanism"] == "skellam" and r["party"] == PNS_ID]
    claimed = ctx.claimed.get("training_epsilon")
    if claimed is not None and sums:
        worst = max(r["epsilon"] for r in sums)
        if not math.isclose(worst, float(claimed), rel_tol=1e-3, abs_tol=1e-6):
            recompute.violations.append(f"run summary claims training epsilon {claimed:g}; "
                                        f"recomputed from the releases: {worst:g}")
    if sums:
        for r in sums:
            bank_rows = [b for b in budget if b["mechanism"] == "skellam" and b["run"] == r["run"]
                         and b["party"] != PNS_ID]
            if bank_rows and not all(math.isclose(b["noise_scale"], r["noise_scale"])
                                     for b in bank_rows):
                recompute.violations.append(f"run {r['run']}: the PNS accounts variance "
                                            f"{r['noise_scale']:g}, the banks' shares differ")
    recompute.evidence.append(f"{len(budget)} releases recomputed, {len(sent)} noise "
                              "parameter sets compared")
    own.evidence.append(f"policies of {', '.join(sorted(ctx.policies)) or 'no party'}")
    ref.evidence.append(f"reference: training epsilon <= {ctx.reference.max_training_epsilon:g}"
                        f", status epsilon <= {ctx.reference.status_epsilon}, per account <= "
                        f"{ctx.reference.lifetime_account_epsilon:g}")
    return [recompute, own, ref]


def _within(check: Check, policy: PrivacyPolicy, row: Mapping[str, Any], where: str,
            label: str) -> None:
    eps = float(row["epsilon"])
    if row["mechanism"] == "randomized_response":
        if policy.status_epsilon is None:
            return  # the policy asks for exact statuses; nothing noised to bound
        if float(row["noise_scale"]) > policy.status_epsilon + EPS_TOLERANCE:
            check.violations.append(f"{where}: statuses at epsilon {row['noise_scale']:g}, "
                                    f"{label} allows {policy.status_epsilon:g}")
        if eps > policy.lifetime_account_epsilon + EPS_TOLERANCE:
            check.violations.append(f"{where}: an account at epsilon {eps:g}, {label} "
                                    f"allows {policy.lifetime_account_epsilon:g} per account")
    elif row["party"] != PNS_ID or row["mechanism"] != "skellam":
        if eps > policy.max_training_epsilon * (1 + 1e-3) + EPS_TOLERANCE:
            check.violations.append(f"{where}: epsilon {eps:.4g} at delta {row['delta']:g}, "
                                    f"{label} allows {policy.max_training_epsilon:g}")
        if row["delta"] > policy.max_training_delta:
            check.violations.append(f"{where}: delta {row['delta']:g} above "
                                    f"{policy.max_training_delta:g} ({label})")
    elif label == "reference policy" and eps > policy.max_training_epsilon * (1 + 1e-3):
        # The PNS's release is the secure sum: the reference bounds it like a bank's.
        check.violations.append(f"{where}: epsilon {eps:.4g}, reference allows "
                                f"{policy.max_training_epsilon:g}")


def check_declared(entries: Sequence[TranscriptEntry]) -> list[Check]:
    """The declared-class checks of the who-may-learn-what table, kept beside the
    content checks (a declared plaintext crossing a boundary is a failure either way)."""
    from federation.audit import privacy_checks

    titles = {
        "no_plaintext_crosses_a_boundary": "No field declared plaintext crosses a boundary",
        "pns_receives_only_protected_bank_values": "The PNS receives only protected bank "
                                                   "values (declared classes)",
        "coordinator_receives_nothing_it_can_read": "The coordinator receives nothing it can "
                                                    "read (declared classes)",
    }
    return [Check(name, titles.get(name, name), violations=bad,
                  evidence=["from the declared field classes"])
            for name, bad in privacy_checks(entries).items()]


def run_checks(entries: Sequence[TranscriptEntry], ctx: RunContext) -> list[Check]:
    return [*check_declared(entries), check_sealed(entries), check_views_agree(entries),
            check_ciphertexts(entries, ctx), check_keyed_hashes(entries, ctx),
            check_noised(entries, ctx), *check_releases(entries, ctx)]


def per_account_epsilon(entries: Sequence[TranscriptEntry], store: EvidenceStore,
                        policies: Mapping[str, PrivacyPolicy]) -> dict[str, Any]:
    """At inference: each queried account's epsilon in this run, from what the banks
    received (the PNS's keyed account tags; each distinct question costs the bank's status
    epsilon)."""
    per_bank: dict[str, list[float]] = defaultdict(list)
    for e in entries:
        if not (_peer_to_peer(e) and e.direction == "received" and e.sender == PNS_ID
                and e.message_type.startswith("test.")):
            continue
        ev = e.details.get("field_evidence") or {}
        if "Account" not in ev or (policy := policies.get(e.recorder)) is None:
            continue
        if policy.status_epsilon is None:
            continue
        columns = {}
        for name, info in ev.items():
            data = store.get(info["sha256"])
            if data is not None and info.get("kind") == "array":
                columns[name] = np.frombuffer(data, dtype=np.dtype(info["dtype"]))
        if "Account" not in columns:
            continue
        rows = np.stack([columns[c] for c in sorted(columns)], axis=1) if len(columns) > 1 \
            else columns["Account"][:, None]
        questions = {tuple(r) for r in rows.tolist()}
        asked: dict[Any, int] = defaultdict(int)
        for q in questions:
            asked[q[sorted(columns).index("Account")]] += 1
        per_bank[e.recorder] += [n * policy.status_epsilon for n in asked.values()]
    values = [v for vs in per_bank.values() for v in vs]
    return {"per_bank": {b: {"accounts": len(v), "max": max(v), "median": float(np.median(v))}
                         for b, v in per_bank.items() if v},
            "values": values, "max": max(values) if values else 0.0}
