"""Test harness: deliver hand-made messages to an unmodified party, as a deviating PNS or
coordinator would, using the project's own code for everything the attacker sends."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clients.bank import Bank
from clients.party import NodeSettings
from crypto.channel import E2EIdentity, MessageHeader, seal
from crypto.linkage import keyed_hashes, linkage_key
from federation import wire
from federation.config import ProtocolConfig
from federation.features import ACCOUNT_IDENTITY
from federation.messages import Envelope
from federation.policy import PrivacyPolicy
from federation.simulate import prepare_parties

PNS = "swift"
TAGS = tuple(ACCOUNT_IDENTITY)


class World:
    """Party state directories with identities and pinned policies, as `simulate` makes
    them, for a scenario of `data`; `bank_policy` sets the banks' limits."""

    def __init__(self, root: Path, data: Path, bank_policy: PrivacyPolicy,
                 parties: tuple[str, ...] = (PNS, "bank01", "bank02"),
                 scenario: str = "scenario01") -> None:
        self.root, self.data, self.scenario = root, data, scenario
        self.policies = prepare_parties(root / "parties", list(parties),
                                        ProtocolConfig(), bank_policy)

    def identity(self, party: str) -> E2EIdentity:
        return E2EIdentity.load(self.root / "parties" / party / "identity.key")

    def public(self, party: str) -> bytes:
        return self.identity(party).public_bytes()

    def settings(self, party: str, state: Path | None = None) -> NodeSettings:
        return NodeSettings(role="bank", party_id=party, data_root=str(self.data),
                            scenario=self.scenario,
                            state_dir=str(state or self.root / "parties" / party),
                            policy=str(self.policies[party]))

    def fresh_state(self, party: str, name: str) -> Path:
        """A copy of the party's state (identity and all) for one independent test."""
        state = self.root / "copies" / name / party
        if state.exists():
            shutil.rmtree(state)
        shutil.copytree(self.root / "parties" / party, state)
        return state


def meta(config: ProtocolConfig, phase: str, stage: str, run_id: str, round: int = 0
         ) -> dict[str, Any]:
    return {**config.to_record(), "phase": phase, "stage": stage, "run_id": run_id,
            "round": round}


def sealed_by(sender: E2EIdentity, sender_id: str, receiver: str, receiver_public: bytes,
              fields: Mapping[str, Any], phase: str, stage: str, run_id: str,
              round: int = 0) -> bytes:
    header = MessageHeader(run_id=run_id, phase=phase, round=round, sender=sender_id,
                           receiver=receiver, message_type=f"{stage}.{phase}")
    return seal(sender, receiver_public, wire.pack(dict(fields)), header)


def linkage_fields(world: World, bank: str, identities: pd.DataFrame,
                   pns: E2EIdentity | None = None) -> dict[str, Any]:
    """The PNS's keyed-hash questions about `identities` (columns Account, Name, Street,
    CountryCityZip), under the PNS-bank linkage key."""
    key = linkage_key(pns or world.identity(PNS), world.public(bank), PNS, bank)
    return {c: keyed_hashes(identities[c].astype(str), key, c) for c in TAGS}


def call_bank(world: World, bank: str, state: Path, phase: str, config: ProtocolConfig,
              stage: str, run_id: str, round: int = 0, sealed: bytes | None = None,
              participants: list[str] | None = None, policy: PrivacyPolicy | None = None
              ) -> Envelope:
    """Run one phase of an unmodified Bank on a hand-made coordinator message."""
    settings = world.settings(bank, state)
    if policy is not None:  # this call's policy; the world's pins unless it has its own
        path = state / "policy.json"
        pins = policy.pinned_keys or PrivacyPolicy.load(world.policies[bank]).pinned_keys
        replace(policy, pinned_keys=pins).save(path)
        settings = replace(settings, policy=str(path))
    public: dict[str, Any] = {}
    if participants is not None:
        public["participants"] = participants
    envelope = Envelope(meta=meta(config, phase, stage, run_id, round), public=public,
                        sealed={PNS: sealed} if sealed is not None else {})
    return getattr(Bank(settings, envelope), phase)()


def open_reply(world: World, bank: str, reply: Envelope, phase: str, stage: str,
               run_id: str, round: int = 0) -> dict[str, Any]:
    """What the PNS reads from a bank's sealed reply."""
    from crypto.channel import open_sealed

    header = MessageHeader(run_id=run_id, phase=phase, round=round, sender=bank,
                           receiver=PNS, message_type=f"{stage}.{phase}")
    return wire.unpack(open_sealed(world.identity(PNS), world.public(bank), reply.sealed[PNS],
                                   header))


def true_status(world: World, bank: str, identities: pd.DataFrame, stage: str = "train"
                ) -> np.ndarray:
    """The coarse status the bank's records give (the judge's view, in the clear)."""
    from federation.data.loader import load_bank_client
    from federation.features import beneficiary_status, reported_status

    accounts = load_bank_client(world.data, world.scenario, stage, bank)
    return reported_status(beneficiary_status(accounts, identities.astype(str)), "coarse")
