"""The coordinator (ServerApp): runs the PV4FAD protocol by relaying sealed payloads.

It reads like docs/protocol.md. The coordinator sees routing metadata, sizes and timing;
every payload between parties is sealed end to end under keys the parties pinned out of
band, so it can open, replace or insert none of them. What it sends the parties (the run
configuration, participant lists, rounds) is a request each party checks against its own
policy. A bank that fails, refuses or times out is named and dropped (degraded mode: its
rows are scored from the PNS's own data); a failure of the PNS stops the run with its
state kept on disk.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flwr.app import Message
from flwr.server import Grid

from federation import evidence
from federation.config import ProtocolConfig
from federation.errors import PartyFailure
from federation.messages import (
    AGGREGATE,
    COORDINATOR,
    FINISH,
    LABEL,
    LINKAGE,
    NOISE,
    PNS_ID,
    SETUP,
    STATUS,
    Envelope,
)
from federation.simulation import wait_for_nodes
from federation.transcript import (
    SIGNING_KEY_FILE,
    PayloadClass,
    TranscriptLedger,
    load_signing_key,
)

Progress = Callable[[str], None]
# A phase's progress bar: (label, parties, seconds it took last time) -> an object with
# update(done) and close() (federation/progress.py; drawn only on a terminal).
PhaseBar = Callable[[str, int, float | None], Any]
# Seconds between "waiting for ..." lines while parties work on a phase.
WAIT_NOTE_S = 30.0


@dataclass
class StageReport:
    """What the coordinator observed in one stage: timings, failures, public results."""

    stage: str
    run_id: str
    phase_seconds: dict[str, float] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    public: dict[str, dict[str, Any]] = field(default_factory=dict)


class Coordinator:
    def __init__(self, grid: Grid, n_parties: int, run_dir: Path, config: ProtocolConfig,
                 progress: Progress, mpc_rendezvous: str = "",
                 expected: Mapping[str, Mapping[str, float]] | None = None,
                 phase_bar: PhaseBar | None = None) -> None:
        self.grid = grid
        self.config = config
        self.run_dir = run_dir
        self.progress = progress
        self.nodes = wait_for_nodes(grid, n_parties)
        self.node_of: dict[str, int] = {}
        self.report = StageReport(stage="", run_id="")
        self.ledger: TranscriptLedger | None = None
        self.round = 0
        self.report_phase = ""
        # Label mode: where CrypTen's parties meet (a file store under the run directory by
        # default; tcp://host:port in a deployment, see docs/security.md).
        self.mpc_rendezvous = mpc_rendezvous
        # Seconds each stage's phases took the last time (an estimate for the progress
        # lines; empty on a first run).
        self.expected = expected or {}
        self.phase_bar = phase_bar
        self._bar: Any = None  # the bar of the phase under way, if any

    # -- the protocol --------------------------------------------------------------------
    def train(self) -> StageReport:
        """Training: the numbered steps of docs/protocol.md."""
        self._start("train")
        setup = self._setup()  # 1. data checks; keys are pinned, nothing secret leaves
        banks = self._alive_banks()
        linkage = self._phase(LINKAGE, {PNS_ID: self._directory(setup, banks)})  # 2.
        requests = {b: blob for b, blob in linkage[PNS_ID].sealed.items() if b in banks}
        participants = sorted(requests)
        while participants:
            shares = self._noise_round(requests, participants)  # 3. banks' encrypted counts
            if not shares:
                break
            aggregate = self._phase(AGGREGATE, {PNS_ID: Envelope(  # 4. sum, build the model
                meta={}, public={"participants": sorted(shares)}, sealed=shares)})
            bad = json.loads(str(aggregate[PNS_ID].public.get("bad_payloads", "{}")))
            if not bad:
                return self.report
            for bank, reason in bad.items():
                self._fail(bank, AGGREGATE, f"reply refused by the PNS: {reason}")
            participants = sorted(set(shares) - set(bad))
            self.round += 1
        causes = "; ".join(f"{b}: {r}" for b, r in sorted(self.report.failed.items()))
        raise PartyFailure(f"no bank's counts could be used, so the table cannot be built "
                            f"({causes or 'no bank in the scenario'})")

    def test(self) -> StageReport:
        """Inference: linkage again, then the banks' reported statuses."""
        self._start("test")
        setup = self._setup()
        banks = self._alive_banks()
        linkage = self._phase(LINKAGE, {PNS_ID: self._directory(setup, banks)})
        if self.config.inference_mode == "labels":
            done = [b for b, blob in sorted(linkage[PNS_ID].sealed.items())
                    if b in self._alive_banks() and self._label_session(b, blob)]
            self._phase(FINISH, {PNS_ID: Envelope(meta={}, public={"label_banks": done})})
            return self.report
        statuses = self._relay(STATUS, linkage[PNS_ID].sealed)
        self._phase(FINISH, {PNS_ID: Envelope(meta={}, sealed=statuses)})
        return self.report

    def _label_session(self, bank: str, request: bytes) -> bool:
        """Label mode: the PNS and one bank run their CrypTen computation; the coordinator
        runs the dealer (correlated randomness only, no input) and the rendezvous."""
        from crypto.mpc import start_dealer

        store = self.run_dir / COORDINATOR / "mpc" / f"{self.report.run_id}-{bank}"
        store.parent.mkdir(parents=True, exist_ok=True)
        rendezvous = self.mpc_rendezvous or f"file://{store}"
        dealer = start_dealer(rendezvous)
        try:
            replies = self._send(LABEL, {
                PNS_ID: Envelope(meta={}, public={"bank": bank, "rendezvous": rendezvous}),
                bank: Envelope(meta={}, public={"rendezvous": rendezvous},
                               sealed={PNS_ID: request})})
        finally:
            dealer.join(self.config.timeout_s)
            if dealer.is_alive():
                dealer.terminate()
        if PNS_ID not in replies:
            raise PartyFailure(f"the PNS ({PNS_ID}) failed in phase {LABEL}: "
                                f"{self.report.failed.get(PNS_ID, 'no answer')}")
        failed = replies[PNS_ID].public.get("label_failed")
        if failed and bank not in self.report.failed:
            self._fail(bank, LABEL, str(failed))
        return bank in replies and not failed

    # -- steps ---------------------------------------------------------------------------
    def _setup(self) -> dict[str, Envelope]:
        targets = {str(n): Envelope(meta={}) for n in self.nodes}
        replies = self._send(SETUP, targets, by_node=True)
        if PNS_ID not in replies:
            raise PartyFailure(f"the PNS ({PNS_ID}) did not complete setup: "
                                f"{self.report.failed.get(PNS_ID, 'no answer')}")
        return replies

    def _directory(self, setup: Mapping[str, Envelope], banks: Iterable[str]) -> Envelope:
        """Routing metadata the PNS needs: each bank's codes."""
        info = {b: {"codes": list(setup[b].public["bank_codes"])} for b in banks}
        return Envelope(meta={}, public={"banks_json": json.dumps(info)})

    def _relay(self, phase: str, sealed: Mapping[str, bytes]) -> dict[str, bytes]:
        """Deliver the PNS's sealed payloads to banks; collect their sealed answers."""
        targets = {bank: Envelope(meta={}, sealed={PNS_ID: blob})
                   for bank, blob in sealed.items() if bank in self._alive_banks()}
        replies = self._send(phase, targets)
        return {bank: env.sealed[PNS_ID] for bank, env in replies.items()
                if PNS_ID in env.sealed}

    def _noise_round(self, requests: Mapping[str, bytes], participants: list[str]
                     ) -> dict[str, bytes]:
        """One round of the banks' counts. Round 0 carries the PNS's requests; a bank
        dropping out forces a new round among the rest (fresh noise and masks; nothing of
        the failed round can be unmasked). Returns the shares of a complete round."""
        while participants:
            targets = {b: Envelope(meta={}, public={"participants": participants},
                                   sealed={PNS_ID: requests[b]} if self.round == 0 else {})
                       for b in participants}
            replies = self._send(NOISE, targets)
            shares = {b: env.sealed[PNS_ID] for b, env in replies.items()
                      if PNS_ID in env.sealed}
            if set(shares) == set(participants):
                return shares
            participants = sorted(shares)
            if participants:
                self.progress(f"  noise: a new round with {', '.join(participants)} only")
            self.round += 1
        return {}

    # -- messaging -----------------------------------------------------------------------
    def _phase(self, phase: str, targets: Mapping[str, Envelope]) -> dict[str, Envelope]:
        replies = self._send(phase, targets)
        if PNS_ID in targets and PNS_ID not in replies:
            raise PartyFailure(f"the PNS ({PNS_ID}) failed in phase {phase}: "
                                f"{self.report.failed.get(PNS_ID, 'no answer')}; "
                                f"party state is kept under {self.run_dir / 'parties'}")
        return replies

    def _send(self, phase: str, targets: Mapping[str, Envelope], by_node: bool = False
              ) -> dict[str, Envelope]:
        """Send one phase's messages; returns the replies of parties that answered well."""
        started = time.perf_counter()
        self.report_phase = phase
        last = self.expected.get(self.report.stage, {}).get(phase)
        self.progress(f"[{self.report.stage}] {phase}: {len(targets)} part"
                      f"{'y' if len(targets) == 1 else 'ies'} ..."
                      + (f" (about {last:.0f} s last time)" if last and last >= 5 else ""))
        messages = []
        # The first setup goes to SuperNodes whose party is known only from its answer:
        # those sends are recorded once the answer names the party, so that the ledger
        # names parties, never Flower's node numbers (a node that never identifies itself
        # keeps its number: the coordinator cannot know more).
        unnamed: dict[int, Envelope] = {}
        for target, env in targets.items():
            node = int(target) if by_node else self.node_of[target]
            env.meta.update(self._meta(phase))
            messages.append(Message(env.to_record(), dst_node_id=node,
                                    message_type=f"query.{phase}"))
            if by_node and node not in self.node_of.values():
                unnamed[node] = env
            else:
                self._record("sent", phase, COORDINATOR,
                             self._name_of(node) if by_node else target, env)
        replies: dict[str, Envelope] = {}
        answered_nodes: set[int] = set()
        self._bar = (self.phase_bar(f"[{self.report.stage}] {phase}", len(messages), last)
                     if self.phase_bar is not None else None)
        try:
            self._collect(phase, messages, unnamed, replies, answered_nodes, started)
        finally:
            if self._bar is not None:
                self._bar.close()
            self._bar = None
            # Sent, but no answer named the party (or the phase was interrupted).
            for node, env in unnamed.items():
                self._record("sent", phase, COORDINATOR, self._name_of(node), env)
        for target in targets:
            node = int(target) if by_node else self.node_of[target]
            if node not in answered_nodes:
                self._fail(self._name_of(node), phase,
                           f"no answer within {self.config.timeout_s:.0f} s")
        self.report.phase_seconds[phase] = (self.report.phase_seconds.get(phase, 0.0)
                                            + time.perf_counter() - started)
        self.progress(f"[{self.report.stage}] {phase}: done in "
                      f"{time.perf_counter() - started:.1f} s")
        return replies

    def _collect(self, phase: str, messages: list[Message], unnamed: dict[int, Envelope],
                 replies: dict[str, Envelope], answered_nodes: set[int], started: float
                 ) -> None:
        """Take a phase's replies as they arrive: name each party, record its answer, keep
        the good ones in `replies`, and move the bar on."""
        for reply in self._exchange(messages):
            node = reply.metadata.src_node_id
            answered_nodes.add(node)
            if self._bar is not None:
                self._bar.update(len(answered_nodes))
            name = self._name_of(node, reply)
            if node in unnamed:
                self._record("sent", phase, COORDINATOR, name, unnamed.pop(node))
            if len(messages) > 1:
                self.progress(f"[{self.report.stage}] {phase}: {name} answered after "
                              f"{time.perf_counter() - started:.1f} s "
                              f"({len(answered_nodes)} of {len(messages)})")
            if reply.has_error():
                reason = (reply.error.reason or "unknown error").strip().splitlines()[-1]
                self._fail(name, phase, reason)
                continue
            env = Envelope.from_message(reply)
            self._record("received", phase, name, COORDINATOR, env)
            if "error" in env.public:
                self._fail(name, phase, str(env.public["error"]))
                continue
            self.report.public.setdefault(name, {}).update(
                {f"{phase}.{k}": v for k, v in env.public.items()
                 if _reportable(v) and k != "ledger_head"})
            replies[name] = env

    def _exchange(self, messages: list[Message]) -> Iterable[Message]:
        """Grid.send_and_receive, but yielding each reply as it arrives (so that progress
        names each party as it finishes) and saying every `WAIT_NOTE_S` who is still
        working; the same deadline (`timeout_s`) and polling interval."""
        pending = {msg_id: msg.metadata.dst_node_id
                   for msg_id, msg in zip(self.grid.push_messages(messages), messages,
                                          strict=True)}
        started = time.monotonic()
        deadline = started + self.config.timeout_s
        next_note = started + WAIT_NOTE_S
        while pending and time.monotonic() < deadline:
            for reply in self.grid.pull_messages(list(pending)):
                pending.pop(reply.metadata.reply_to_message_id, None)
                yield reply
            if pending and time.monotonic() >= next_note:
                names = sorted(self._name_of(n) for n in pending.values())
                known = [n for n in names if not n.startswith("node ")]
                waiting = ", ".join(known) if len(known) == len(names) else (
                    f"{len(names)} part{'y' if len(names) == 1 else 'ies'}")
                self.progress(f"[{self.report.stage}] {self.report_phase}: waiting for "
                              f"{waiting} ({time.monotonic() - started:.0f} s of at most "
                              f"{self.config.timeout_s:.0f} s)")
                next_note += WAIT_NOTE_S
            if pending:
                if self._bar is not None:
                    self._bar.update()  # the elapsed time and estimate move on
                time.sleep(getattr(self.grid, "pull_interval", 0.1))

    def _name_of(self, node: int, reply: Message | None = None) -> str:
        for name, n in self.node_of.items():
            if n == node:
                return name
        if reply is not None and not reply.has_error():
            party = str(reply.content.config_records["meta"]["party_id"])
            self.node_of[party] = node
            return party
        return f"node {node}"

    def _fail(self, party: str, phase: str, reason: str) -> None:
        self.report.failed[party] = f"{phase}: {reason}"
        self.progress(f"[{self.report.stage}] {phase}: party {party} failed: {reason}")

    def _alive_banks(self) -> list[str]:
        return sorted(p for p in self.node_of if p != PNS_ID and p not in self.report.failed)

    def _meta(self, phase: str) -> dict[str, Any]:
        return {
            **self.config.to_record(), "phase": phase, "stage": self.report.stage,
            "run_id": self.report.run_id, "round": self.round,
        }

    def _record(self, direction: str, phase: str, sender: str, receiver: str,
                env: Envelope) -> None:
        assert self.ledger is not None
        fields = {"meta": PayloadClass.PUBLIC, "public": PayloadClass.PUBLIC}
        if env.sealed:  # in plaintext mode the relayed payloads are readable
            fields["sealed"] = (PayloadClass.PLAINTEXT if self.config.plaintext
                                else PayloadClass.CIPHERTEXT)
        self.ledger.record(
            direction=direction, round=self.round, phase=phase, sender=sender,
            receiver=receiver, message_type=f"{self.report.stage}.{phase}",
            nbytes=env.public_bytes() + env.sealed_bytes(), fields=fields,
            details={"relayed": {k: len(v) for k, v in env.sealed.items()},
                     "relayed_sha256": {k: evidence.sha256(v) for k, v in env.sealed.items()},
                     "ledger_head": str(env.public.get("ledger_head", ""))},
        )

    def _start(self, stage: str) -> None:
        self.report = StageReport(stage=stage, run_id=secrets.token_hex(8))
        self.round = 0
        self.ledger = TranscriptLedger(
            COORDINATOR, self.report.run_id, self.run_dir / COORDINATOR / "ledger.jsonl",
            signer=load_signing_key(self.run_dir / COORDINATOR / SIGNING_KEY_FILE))


def _reportable(value: Any) -> bool:
    return isinstance(value, int | float | str | bool) or (
        isinstance(value, list) and all(isinstance(v, str) for v in value))
