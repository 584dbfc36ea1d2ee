"""Crypto building-block benchmarks: CKKS joint counts, secure aggregation, CrypTen labels, DP.

Runs each measurement `--reps` times and prints medians as Markdown (also written to
`--out`). Reproduce: .venv/bin/python bench/bench_crypto.py --out docs/benchmarks/crypto.md
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import tenseal.sealapi as seal

from crypto import _sealio, _sealraw
from crypto.channel import E2EIdentity
from crypto.ckks import (
    CKKSKeyPair,
    CKKSParams,
    EncryptedGroups,
    PublicContext,
    constant_terms,
    data_modulus,
    decode_counts,
    digit_constants,
    encrypt_groups,
    masked_counts,
    product_sums,
)
from crypto.csprng import SecureRandom
from crypto.dp import gaussian_noise, keyed_randomized_response, skellam_noise
from crypto.mpc import secure_flags
from crypto.secagg import SecAggParticipant


def _median_time(fn: Callable[[], object], reps: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(reps):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def bench_ckks(rows: int, groups: int, reps: int) -> list[str]:
    params = CKKSParams()
    keys = CKKSKeyPair.generate(params)
    ctx = PublicContext.from_bytes(keys.public_context_bytes())
    rng = np.random.default_rng(0)
    group, bits = rng.integers(0, groups, rows), rng.integers(0, 2, (1, rows)).astype(np.int8)
    t_enc, request = _median_time(lambda: encrypt_groups(keys, group, groups), reps)
    t_open, opened = _median_time(lambda: EncryptedGroups.open(request, ctx, rows, 64), reps)
    t_sum, sums = _median_time(lambda: product_sums(opened, bits), reps)
    layout = opened.layout
    noise = rng.integers(-20, 20, groups)
    constants = [digit_constants(layout, noise)]
    t_mask, reply = _median_time(lambda: masked_counts(ctx, sums, constants), reps)
    t_dec, terms = _median_time(lambda: constant_terms(keys, reply, 1, layout.n_polys), reps)
    truth = np.zeros(groups, np.int64)
    np.add.at(truth, group, bits[0])
    exact = np.array_equal(decode_counts(layout, terms, data_modulus(keys)[1])[0],
                           truth + noise)
    chunks = -(-rows // params.poly_modulus_degree)
    return [
        f"CKKS joint counts (version 2: the PNS's key, coefficient encoding), "
        f"N={params.poly_modulus_degree}, coeff bits {list(params.coeff_mod_bit_sizes)}, unit "
        f"2^{params.unit_bits}, {params.digits_per_poly} groups per polynomial, flood "
        f"2^{params.flood_bits}; {rows:,} rows ({chunks} chunks), {groups} groups "
        f"({layout.n_polys} polynomials per chunk); median of {reps}:",
        "",
        "| operation | party | median s | throughput |",
        "|---|---|---|---|",
        f"| encrypt groups | PNS | {t_enc:.2f} | {rows / t_enc:,.0f} rows/s |",
        f"| open + validate request | bank | {t_open:.2f} | {rows / t_open:,.0f} rows/s |",
        f"| products with the answer bits, summed | bank | {t_sum:.2f} | "
        f"{rows / t_sum:,.0f} rows/s |",
        f"| re-randomize, mask, flood | bank | {t_mask:.3f} | {layout.n_polys} ciphertexts |",
        f"| decrypt constant coefficients | PNS | {t_dec:.3f} | {layout.n_polys} ciphertexts |",
        "",
        f"Bytes: request {len(request):,} ({len(request) / rows:.1f} B/row); reply "
        f"{len(reply):,} ({len(reply) // layout.n_polys:,} per ciphertext); public context "
        f"{len(keys.public_context_bytes()):,}. Counts exact: {exact}.",
        "",
        *_noise_margin(keys, ctx, opened, sums, layout),
    ]


def _noise_margin(keys, ctx, opened, sums, layout) -> list[str]:
    """The data-dependent noise in the constant coefficient, measured against the bound
    the flood is sized for: decrypt the unmasked sums (the PNS's key) and subtract the
    exact counts."""
    from crypto import framing

    primes, modulus = data_modulus(keys)
    unit = 1 << keys.params.unit_bits
    worst = 0
    for blob in framing.unpack(sums, "ckks-product-sums")[1]:
        ct = _sealio.load_into(seal.Ciphertext(), keys.suite.context, blob, "sums")
        plain = seal.Plaintext()
        keys.decryptor.decrypt(ct, plain)
        value = _sealraw.constant_coefficient(plain, primes)
        value -= modulus if value > modulus // 2 else 0
        worst = max(worst, abs(value - (value + unit // 2) // unit * unit))
    bound = keys.params.noise_bound_bits
    return [f"Noise in the constant coefficient before the flood (largest over the "
            f"{layout.n_polys} sums): 2^{math.log2(max(worst, 1)):.1f}; the bound the flood is "
            f"sized for (1,024 chunks): 2^{bound:.1f}; flood 2^{keys.params.flood_bits}: "
            f"statistical distance at most 2^{bound - keys.params.flood_bits:.1f} per "
            "reply ciphertext.", ""]


def bench_secagg(parties_list: list[int], sizes: list[int], reps: int) -> list[str]:
    _, modulus = data_modulus(CKKSKeyPair.generate())
    lines = ["Secure-aggregation masks modulo Q (180 bits; ChaCha20 expansion), median of "
             f"{reps}; time for one party's masks:", "",
             "| parties | values | per-party s |", "|---|---|---|"]
    for n_parties in parties_list:
        names = [f"p{i:02d}" for i in range(n_parties)]
        members = {p: SecAggParticipant(p, E2EIdentity.generate()) for p in names}
        publics = {p: m.identity.public_bytes() for p, m in members.items()}
        first = members[names[0]]
        for size in sizes:
            t, _ = _median_time(partial(first.masks, names, "bench", publics, size, modulus),
                                reps)
            lines.append(f"| {n_parties} | {size:,} | {t:.4f} |")
    masks = [members[p].masks(names, "check", publics, 3, modulus) for p in names]
    if [sum(m[i] for m in masks) % modulus for i in range(3)] != [0, 0, 0]:
        raise RuntimeError("secure-aggregation masks do not cancel")
    return [*lines, ""]


def bench_mpc(sizes: list[int], reps: int) -> list[str]:
    lines = [f"CrypTen label computation (PNS, bank and TTP dealer as 3 local processes; "
             f"two statuses), median of {reps}:", "",
             "| rows | protocol s (PNS) | with process start s | rows/s | bytes per row "
             "(PNS, both ways) |", "|---|---|---|---|---|"]
    rng = np.random.default_rng(2)
    for size in sizes:
        base, evidence = rng.uniform(-6, 2, size), rng.uniform(-8, 8, (size, 2))
        onehot = np.eye(2)[rng.integers(0, 2, size)]
        score = base + (evidence * onehot).sum(axis=1)
        walls, runs = [], []
        for _ in range(reps):
            start = time.perf_counter()
            runs.append(secure_flags(base, evidence, onehot, 0.0)[0])
            walls.append(time.perf_counter() - start)
        clear = np.abs(score) > 1e-3
        if not all(np.array_equal(r.flags[clear], (score > 0)[clear]) for r in runs):
            raise RuntimeError("the label computation returned wrong flags")
        comp = statistics.median(r.seconds for r in runs)
        lines.append(f"| {size:,} | {comp:.2f} | {statistics.median(walls):.1f} | "
                     f"{size / comp:,.0f} | {runs[0].bytes_sent / size:,.0f} |")
    return [*lines, ""]


def bench_dp(size: int, reps: int) -> list[str]:
    rng = SecureRandom()
    bits = np.zeros(size, dtype=np.int64)
    keys = [i.to_bytes(17, "little") for i in range(size)]
    key = bytes(32)
    cases = {
        "uniform (ChaCha20)": lambda: rng.uniform(size),
        "Gaussian": lambda: gaussian_noise(size, 1.0, rng),
        "Skellam, variance 100": lambda: skellam_noise(size, 100.0, rng),
        "Skellam, variance 10^6": lambda: skellam_noise(size, 1e6, rng),
        "keyed randomized response (one answer per question)":
            lambda: keyed_randomized_response(bits, keys, 2, 1.0, key),
    }
    lines = [f"DP sampling ({size:,} draws, median of {reps}):", "",
             "| sampler | draws/s |", "|---|---|"]
    for name, fn in cases.items():
        lines.append(f"| {name} | {size / _median_time(fn, reps)[0]:,.0f} |")
    return [*lines, ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--groups", type=int, default=12)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--secagg-max", type=int, default=10_000)
    parser.add_argument("--mpc-sizes", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    sizes = [s for s in (3, 100, 10_000) if s <= args.secagg_max]
    sections = [
        ("CKKS", lambda: bench_ckks(args.rows, args.groups, args.reps)),
        ("secagg", lambda: bench_secagg([2, 4, 9, 20], sizes, args.reps)),
        ("mpc", lambda: bench_mpc(args.mpc_sizes, args.reps)),
        ("dp", lambda: bench_dp(1_000_000, args.reps)),
    ]
    lines = ["## Crypto building blocks", "",
             "Command: `.venv/bin/python bench/bench_crypto.py " + " ".join(argv or sys.argv[1:])
             + "` (2 shared CPU cores).", ""]
    for name, fn in sections:
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        lines += fn()
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
