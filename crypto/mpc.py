"""Two-party secure comparison with CrypTen, parties as separate local processes.

Label-only output: the score v of a row is additively shared between the PNS and the bank
(the bank holds the masked value y = v + m it decrypted, the PNS holds -m, both in fixed
point with `frac_bits`). CrypTen compares v with a public threshold on the shares and
reveals the bit to the PNS only. Beaver triples come from CrypTen's trusted third party
(TTP) provider, run by the coordinator: it produces correlated randomness and sees no input.
CrypTen's default "trusted first party" provider is not used: it lets party 0 know every
triple, which breaks privacy against it.

Transport: CrypTen's gloo backend. The parties rendezvous through a shared file and then
open direct TCP connections to one another (and to the TTP); see docs/security.md for the
network access this requires. Each party process reads only its own input file.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from federation.errors import ProtocolError
from federation.transcript import PayloadClass

PNS_RANK, BANK_RANK, WORLD = 0, 1, 2  # the TTP takes rank WORLD


@dataclass(frozen=True)
class ThresholdResult:
    """What the PNS learns: one bit per row (score > threshold); wall and protocol times."""

    labels: np.ndarray
    seconds: float  # including process start-up
    compute_seconds: float  # from shares in to the revealed bits, measured at the PNS
    payload_class = PayloadClass.SECRET_SHARE  # what each party contributes


def _environment(rank: int, rendezvous: Path) -> None:
    os.environ.update({"WORLD_SIZE": str(WORLD), "RANK": str(rank),
                       "RENDEZVOUS": f"file://{rendezvous}", "DISTRIBUTED_BACKEND": "gloo"})


def _init(rank: int, rendezvous: Path, start: bool = True):  # noqa: ANN202  (crypten module)
    from crypto.crypten_compat import import_crypten

    crypten = import_crypten()
    crypten.cfg.mpc.provider = "TTP"
    _environment(rank, rendezvous)
    if start:
        crypten.init()
    return crypten


def _party(rank: int, rendezvous: Path, share_file: Path, out_file: Path, threshold: float,
           frac_bits: int) -> None:
    import torch

    crypten = _init(rank, rendezvous)
    share = torch.from_numpy(np.load(share_file))
    start = time.perf_counter()
    value = crypten.mpc.MPCTensor.from_shares(share, precision=frac_bits)
    bits = (value > threshold).get_plain_text(dst=PNS_RANK)
    if rank == PNS_RANK:
        np.save(out_file, bits.numpy() > 0.5)
        out_file.with_suffix(".seconds").write_text(str(time.perf_counter() - start))
    crypten.uninit()


def _dealer(rendezvous: Path) -> None:
    crypten = _init(WORLD, rendezvous, start=False)  # TTPServer() initializes itself
    crypten.mpc.provider.TTPServer()
    crypten.uninit()


def secure_threshold(
    pns_share: np.ndarray,
    bank_share: np.ndarray,
    threshold: float,
    frac_bits: int = 16,
    timeout_s: float = 600.0,
) -> ThresholdResult:
    """Bits [v > threshold] for v = (pns_share + bank_share) / 2^frac_bits, to the PNS only.

    Shares are int64 (two's complement, mod 2^64). Runs the PNS, the bank and the dealer as
    three local processes; raises ProtocolError naming a party that fails or times out.
    """
    pns_share, bank_share = np.asarray(pns_share), np.asarray(bank_share)
    if pns_share.shape != bank_share.shape or pns_share.ndim != 1 or pns_share.dtype != np.int64 \
            or bank_share.dtype != np.int64:
        raise ProtocolError("secure_threshold: shares must be 1-D int64 arrays of equal length")
    with tempfile.TemporaryDirectory(prefix="pv4fad-mpc-") as tmp:
        work = Path(tmp)
        rendezvous, out_file = work / "rendezvous", work / "labels.npy"
        files = {PNS_RANK: work / "pns.npy", BANK_RANK: work / "bank.npy"}
        np.save(files[PNS_RANK], pns_share)
        np.save(files[BANK_RANK], bank_share)
        ctx = mp.get_context("spawn")  # fresh interpreters: no party inherits another's data
        names = {PNS_RANK: "pns", BANK_RANK: "bank", WORLD: "dealer"}
        procs = {r: ctx.Process(target=_party, args=(r, rendezvous, files[r], out_file,
                                                    float(threshold), frac_bits))
                 for r in (PNS_RANK, BANK_RANK)}
        procs[WORLD] = ctx.Process(target=_dealer, args=(rendezvous,))
        start = time.perf_counter()
        for proc in procs.values():
            proc.start()
        deadline = start + timeout_s
        for proc in procs.values():
            proc.join(max(0.0, deadline - time.perf_counter()))
        failed = [names[r] for r, p in procs.items() if p.exitcode != 0]
        for proc in procs.values():
            if proc.is_alive():
                proc.terminate()
                proc.join()
        if failed or not out_file.exists():
            raise ProtocolError(f"secure_threshold: party {', '.join(failed) or 'pns'} failed "
                                f"or timed out after {timeout_s:.0f} s")
        compute = float(out_file.with_suffix(".seconds").read_text())
        return ThresholdResult(np.load(out_file), time.perf_counter() - start, compute)
