"""Label-only inference: a two-party CrypTen computation whose only output is one bit per
row, revealed to the PNS alone.

Per row the PNS holds its forest's log-odds `base` and the status evidence E[row, s] of
every status s; the bank holds the one-hot vector of the status it reports (all zeros
where it does not answer). CrypTen computes on additive shares

    flag = base + sum_s E[row, s] * onehot[row, s] > threshold

and opens the flag to the PNS only (`get_plain_text(dst=PNS)`); the bank learns nothing,
the PNS learns the flags, not the statuses. Beaver triples for the products come from
CrypTen's trusted-third-party provider (the dealer, a third process the coordinator runs):
it produces correlated randomness and sees no input. CrypTen's default "trusted first
party" provider is not used: it lets party 0 know every triple.

Each party runs its side in a fresh process (`run_party`): CrypTen keeps global state, and a
party's process must not inherit another's data. Transport: CrypTen's gloo backend; the
parties rendezvous through a store (a shared file in a simulation, tcp://host:port in a
deployment) and then connect directly to one another; see docs/security.md.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from federation.errors import ProtocolError

PNS_RANK, BANK_RANK = 0, 1
WORLD = 2  # the two computing parties; CrypTen's dealer takes the next rank
DEALER_RANK = WORLD
ROWS_PER_BATCH = 100_000  # bounds each party's memory in the comparison circuit


@dataclass(frozen=True)
class PartyResult:
    """One party's view: the flags (PNS only), bytes it sent, rounds, protocol seconds."""

    flags: np.ndarray | None
    bytes_sent: int
    rounds: int
    seconds: float


def _init(rank: int, rendezvous: str) -> Any:
    from crypto.crypten_compat import import_crypten

    crypten = import_crypten()
    crypten.cfg.mpc.provider = "TTP"
    crypten.cfg.communicator.verbose = True  # byte and round counts
    os.environ.update({"WORLD_SIZE": str(WORLD), "RANK": str(rank), "RENDEZVOUS": rendezvous,
                       "DISTRIBUTED_BACKEND": "gloo"})
    return crypten


def _party_main(rank: int, rendezvous: str, inputs: Path, out: Path, threshold: float) -> None:
    """One party's process: share its inputs, compute, open the flags to the PNS."""
    import torch

    crypten = _init(rank, rendezvous)
    crypten.init()
    with np.load(inputs, allow_pickle=False) as data:
        mine = {k: torch.from_numpy(data[k]) for k in data.files}
    n, k = int(mine["shape"][0]), int(mine["shape"][1])
    started, flags = time.perf_counter(), []
    for lo in range(0, n, ROWS_PER_BATCH):
        hi = min(n, lo + ROWS_PER_BATCH)
        base = crypten.cryptensor(mine["base"][lo:hi] if rank == PNS_RANK
                                  else torch.zeros(hi - lo), src=PNS_RANK)
        evidence = crypten.cryptensor(mine["evidence"][lo:hi] if rank == PNS_RANK
                                      else torch.zeros(hi - lo, k), src=PNS_RANK)
        onehot = crypten.cryptensor(mine["onehot"][lo:hi] if rank == BANK_RANK
                                    else torch.zeros(hi - lo, k), src=BANK_RANK)
        score = base + (evidence * onehot).sum(dim=1)
        flags.append((score > threshold).get_plain_text(dst=PNS_RANK))
    stats = crypten.comm.get().get_communication_stats()
    result = {"bytes": int(stats["bytes"]), "rounds": int(stats["rounds"]),
              "seconds": time.perf_counter() - started}
    if rank == PNS_RANK:
        np.save(out.with_suffix(".npy"), torch.cat(flags).numpy() > 0.5 if flags
                else np.zeros(0, bool))
    out.with_suffix(".json").write_text(json.dumps(result))
    crypten.uninit()


def _dealer_main(rendezvous: str) -> None:
    crypten = _init(DEALER_RANK, rendezvous)
    crypten.mpc.provider.TTPServer()  # initializes itself, serves until the parties finish
    crypten.uninit()


def start_dealer(rendezvous: str) -> Any:
    """The dealer (the coordinator's part): a started process; join it after the phase."""
    proc = mp.get_context("spawn").Process(target=_dealer_main, args=(rendezvous,))
    proc.start()
    return proc


def run_party(role: str, rendezvous: str, arrays: dict[str, np.ndarray], threshold: float,
              timeout_s: float) -> PartyResult:
    """Run the PNS's (`role="pns"`: base (n,), evidence (n, k)) or the bank's
    (`role="bank"`: onehot (n, k)) side in a fresh process; raises ProtocolError naming the
    party if it fails or times out."""
    rank = {"pns": PNS_RANK, "bank": BANK_RANK}[role]
    shape = next(iter(arrays.values())).shape
    n, k = shape[0], (arrays["evidence"].shape[1] if role == "pns" else shape[1])
    with tempfile.TemporaryDirectory(prefix=f"pv4fad-mpc-{role}-") as tmp:
        inputs, out = Path(tmp) / "inputs.npz", Path(tmp) / "out"
        np.savez(inputs, shape=np.array([n, k]), **arrays)
        proc = mp.get_context("spawn").Process(
            target=_party_main, args=(rank, rendezvous, inputs, out, float(threshold)))
        proc.start()
        proc.join(timeout_s)
        if proc.is_alive():
            proc.terminate()
            proc.join()
        if proc.exitcode != 0 or not out.with_suffix(".json").exists():
            raise ProtocolError(f"label computation: the {role}'s CrypTen party failed or "
                                f"timed out after {timeout_s:.0f} s (exit {proc.exitcode})")
        stats = json.loads(out.with_suffix(".json").read_text())
        flags = np.load(out.with_suffix(".npy")) if role == "pns" else None
        return PartyResult(flags, stats["bytes"], stats["rounds"], stats["seconds"])


def secure_flags(base: np.ndarray, evidence: np.ndarray, onehot: np.ndarray,
                 threshold: float, timeout_s: float = 600.0) -> tuple[PartyResult, PartyResult]:
    """Both parties and the dealer on this machine (tests and benchmarks): the PNS's and
    the bank's results."""
    from concurrent.futures import ThreadPoolExecutor

    base, evidence, onehot = np.asarray(base), np.asarray(evidence), np.asarray(onehot)
    if base.ndim != 1 or evidence.shape != (base.size, onehot.shape[-1]) or \
            onehot.shape != evidence.shape:
        raise ProtocolError("secure_flags: base (n,), evidence and onehot (n, k) expected")
    with tempfile.TemporaryDirectory(prefix="pv4fad-mpc-") as tmp:
        rendezvous = f"file://{Path(tmp) / 'rendezvous'}"
        dealer = start_dealer(rendezvous)
        try:
            with ThreadPoolExecutor(2) as pool:
                pns = pool.submit(run_party, "pns", rendezvous,
                                  {"base": base.astype(np.float64),
                                   "evidence": evidence.astype(np.float64)},
                                  threshold, timeout_s)
                bank = pool.submit(run_party, "bank", rendezvous,
                                   {"onehot": onehot.astype(np.float64)}, threshold, timeout_s)
                return pns.result(), bank.result()
        finally:
            dealer.join(30)
            if dealer.is_alive():
                dealer.terminate()
