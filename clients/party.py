"""What every party has: its own state directory, identity keys, ledger and sealed mail.

A party's state lives only in its own directory (keys, derived data, model, ledger), so a
process can stop between phases or stages and the party carries on from disk, as a
container would after a restart. Its privacy policy (federation/policy.py) comes from its
node config, never from a message: it pins every peer's public key, and the run
configuration the coordinator sends is only a request checked against it.
"""

from __future__ import annotations

import json
import resource
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clients.backends import backend_for
from federation import evidence, wire
from federation.config import ProtocolConfig
from federation.errors import ProtocolError
from federation.messages import COORDINATOR, Envelope
from federation.policy import PolicyRefusal, PrivacyPolicy
from federation.transcript import (
    SIGNING_KEY_FILE,
    PayloadClass,
    TranscriptLedger,
    load_signing_key,
)


@dataclass(frozen=True)
class NodeSettings:
    """Where a party finds its data and keeps its state (a SuperNode's node config)."""

    role: str  # "pns" | "bank"
    party_id: str  # "swift", "bank01", ...
    data_root: str
    scenario: str
    state_dir: str
    policy: str  # the party's privacy policy file (JSON; federation/policy.py)
    identity: str = ""  # its X25519 private key file (default: identity.key in state-dir)
    fail_at: str = ""  # fault injection for resilience tests: "<phase>[:hang|:garbage]"

    @classmethod
    def from_node_config(cls, cfg: Mapping[str, Any]) -> NodeSettings:
        try:
            return cls(
                role=str(cfg["role"]),
                party_id=str(cfg["party-id"]),
                data_root=str(cfg["data-root"]),
                scenario=str(cfg["scenario"]),
                state_dir=str(cfg["state-dir"]),
                policy=str(cfg["policy"]),
                identity=str(cfg.get("identity", "")),
                fail_at=str(cfg.get("fail-at", "")),
            )
        except KeyError as exc:
            raise ProtocolError(f"node config lacks {exc.args[0]!r}") from exc

    def to_node_config(self) -> dict[str, str]:
        return {
            "role": self.role, "party-id": self.party_id, "data-root": self.data_root,
            "scenario": self.scenario, "state-dir": self.state_dir, "policy": self.policy,
            "identity": self.identity, "fail-at": self.fail_at,
        }


class Party:
    """Base of the PNS and bank parties: one instance per incoming message."""

    role = ""

    def __init__(self, settings: NodeSettings, envelope: Envelope) -> None:
        self.settings = settings
        self.id = settings.party_id
        self.meta = envelope.meta
        self.stage = str(envelope.meta["stage"])
        self.run_id = str(envelope.meta["run_id"])
        self.round = int(envelope.meta.get("round", 0))
        self.config = ProtocolConfig.from_record(envelope.meta)
        self.state = Path(settings.state_dir)
        self.state.mkdir(parents=True, exist_ok=True)
        self.ledger = TranscriptLedger(self.id, self.run_id, self.state / "ledger.jsonl",
                                       signer=load_signing_key(self.state / SIGNING_KEY_FILE))
        self._identity: Any = None
        self.envelope = envelope
        self.policy = PrivacyPolicy.load(settings.policy)
        self.backend = backend_for(self.config.plaintext)
        self._record_inbound(envelope)
        if self.config.plaintext and not self.policy.allow_plaintext:
            raise self.refuse("allow_plaintext", "the run asks for plaintext mode (no "
                              "encryption); this party's policy does not allow it")

    # -- identity and peers -------------------------------------------------------------
    @property
    def identity(self) -> Any:
        """This party's X25519 identity, made before the run (`pv4fad party init`) so that
        its peers could pin the public half."""
        from crypto.channel import IDENTITY_FILE, E2EIdentity

        if self._identity is None:
            path = Path(self.settings.identity) if self.settings.identity else (
                self.state / IDENTITY_FILE)
            if not path.exists():
                raise ProtocolError(f"{self.id}: no identity key at {path}; create it with "
                                    "`pv4fad party init` and give its public key to the peers")
            self._identity = E2EIdentity.load(path)
        return self._identity

    def peer_public(self, peer: str) -> bytes:
        """The X25519 public key of another party, as pinned in this party's policy."""
        return self.policy.pinned(peer)

    def refuse(self, setting: str, reason: str) -> PolicyRefusal:
        """A refusal under this party's policy: recorded in its ledger, one line naming the
        setting (and the policy file) for the caller to raise."""
        message = f"{self.id} refuses: {reason} (policy {setting}, {self.settings.policy})"
        self.ledger.record_refusal(phase=str(self.meta.get("phase", "")), round=self.round,
                                   setting=setting, reason=message)
        return PolicyRefusal(message)

    # -- sealed mail ----------------------------------------------------------------------
    def _header(self, sender: str, receiver: str, phase: str) -> Any:
        from crypto.channel import MessageHeader

        return MessageHeader(
            run_id=self.run_id, phase=phase, round=self.round, sender=sender,
            receiver=receiver, message_type=f"{self.stage}.{phase}",
        )

    def seal_for(
        self, peer: str, phase: str, fields: Mapping[str, Any],
        classes: Mapping[str, PayloadClass],
    ) -> bytes:
        """Pack `fields`, encrypt them end to end for `peer`, and record the send."""
        payload = wire.pack(fields)
        if self.config.plaintext:
            blob = payload
        else:
            from crypto.channel import seal

            blob = seal(self.identity, self.peer_public(peer), payload,
                        self._header(self.id, peer, phase))
        self.ledger.record(
            direction="sent", round=self.round, phase=phase, sender=self.id, receiver=peer,
            message_type=f"{self.stage}.{phase}", nbytes=len(blob), fields=classes,
            details=evidence.sent(payload, blob),
        )
        return blob

    def open_from(
        self, peer: str, phase: str, blob: bytes, classes: Mapping[str, PayloadClass],
    ) -> dict[str, Any]:
        """Authenticate and decrypt a payload `peer` sealed for this party in `phase`."""
        if self.config.plaintext:
            payload = blob
        else:
            from crypto.channel import ReplayGuard, open_sealed

            payload = open_sealed(self.identity, self.peer_public(peer), blob,
                                  self._header(peer, self.id, phase))
            # Only after authentication, so forged blobs cannot fill the guard.
            ReplayGuard(self.state / "accepted_messages.txt").accept(blob)
        self.ledger.record(
            direction="received", round=self.round, phase=phase, sender=peer,
            receiver=self.id, message_type=f"{self.stage}.{phase}", nbytes=len(blob),
            fields=classes,
            details=evidence.received(payload, blob, self.state / evidence.EVIDENCE_DIR),
        )
        return wire.unpack(payload, what=f"{phase} payload from {peer}")

    def _record_inbound(self, envelope: Envelope) -> None:
        """The coordinator's message itself: public metadata plus relayed sealed blobs."""
        self.ledger.record(
            direction="received", round=self.round, phase=envelope.phase,
            sender=COORDINATOR, receiver=self.id, message_type=f"{self.stage}.{envelope.phase}",
            nbytes=envelope.public_bytes(), fields={"meta": PayloadClass.PUBLIC,
                                                    "public": PayloadClass.PUBLIC},
        )

    def reply(self, phase: str, public: Mapping[str, Any] | None = None,
              sealed: Mapping[str, bytes] | None = None) -> Envelope:
        """The reply to the coordinator; records the public part (sealed parts are
        recorded by `seal_for`)."""
        out = Envelope(
            meta={"phase": phase, "party_id": self.id, "role": self.role},
            # The head of this party's signed ledger chain, which the coordinator records:
            # removing this party's lines up to here is then detectable.
            public={**(public or {}), **process_stats(), "ledger_head": self.ledger.head()},
            sealed=dict(sealed or {}),
        )
        self.ledger.record(
            direction="sent", round=self.round, phase=phase, sender=self.id,
            receiver=COORDINATOR, message_type=f"{self.stage}.{phase}",
            nbytes=out.public_bytes(), fields={"public": PayloadClass.PUBLIC},
        )
        return out

    # -- state files ----------------------------------------------------------------------
    def stage_dir(self) -> Path:
        path = self.state / self.stage
        path.mkdir(parents=True, exist_ok=True)
        return path

    def save_json(self, name: str, value: Any) -> None:
        tmp = self.state / f".{name}.tmp"
        tmp.write_text(json.dumps(value, indent=1, sort_keys=True))
        tmp.replace(self.state / name)

    def load_json(self, name: str) -> Any:
        path = self.state / name
        if not path.exists():
            raise ProtocolError(f"{self.id}: missing state {path} (was an earlier phase run?)")
        return json.loads(path.read_text())

    def save_arrays(self, name: str, **arrays: np.ndarray) -> None:
        path = self.stage_dir() / f"{name}.npz"
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(path)

    def load_arrays(self, name: str) -> dict[str, np.ndarray]:
        path = self.stage_dir() / f"{name}.npz"
        if not path.exists():
            raise ProtocolError(f"{self.id}: missing state {path} (was an earlier phase run?)")
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}


def process_stats() -> dict[str, Any]:
    """Peak resident memory of this process (MiB) and its id, for the run summary."""
    import os

    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"pid": os.getpid(), "peak_rss_mib": round(peak_kib / 1024, 1)}
