"""Crypto building-block benchmarks: CKKS, secure aggregation, CrypTen comparison, DP noise.

Runs each measurement `--reps` times and prints medians as Markdown (also written to
`--out`). Reproduce: .venv/bin/python bench/bench_crypto.py --out docs/benchmarks/crypto.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tenseal.sealapi as seal

from crypto import _sealio, framing
from crypto.channel import E2EIdentity
from crypto.ckks import (
    CKKSKeyPair,
    CKKSParams,
    EncryptedColumns,
    decrypt_rows,
    decrypt_slot_sums,
    encrypt_onehot,
    grouped_sums,
    rowwise_scores,
)
from crypto.csprng import SecureRandom
from crypto.dp import gaussian_noise, randomized_response, skellam_noise
from crypto.mpc import secure_threshold
from crypto.secagg import SecAggParticipant, aggregate


def _median_time(fn: Callable[[], object], reps: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(reps):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def bench_ckks(rows: int, groups: int, categories: int, reps: int) -> list[str]:
    params = CKKSParams()
    keys = CKKSKeyPair.generate(params)
    ctx = keys.public_context()
    rng = np.random.default_rng(0)
    status, group = rng.integers(0, categories, rows), rng.integers(0, groups, rows)
    n_enc = categories - 1
    t_enc, enc = _median_time(lambda: encrypt_onehot(keys, status, categories), reps)
    payload = enc.to_bytes()
    t_load, opened = _median_time(lambda: EncryptedColumns.from_bytes(payload, ctx), reps)
    t_grp, masked = _median_time(lambda: grouped_sums(opened, group, groups), reps)
    table_bytes = masked.ciphertext_bytes()
    t_dec, reply = _median_time(lambda: decrypt_slot_sums(keys, table_bytes), reps)
    truth = np.zeros((groups, categories), np.int64)
    np.add.at(truth, (group, status), 1)
    exact = np.array_equal(reply - masked.mask_totals, truth)
    weights = rng.uniform(-1, 1, (rows, categories))
    t_row, rows_masked = _median_time(lambda: rowwise_scores(opened, weights), reps)
    rows_bytes = rows_masked.ciphertext_bytes()
    t_drow, _ = _median_time(lambda: decrypt_rows(keys, rows_bytes), reps)
    t_prod = _product_time(ctx, opened, reps)
    slots = params.slot_count
    n_cts = len(masked.ciphertexts)
    return [
        f"CKKS, N={params.poly_modulus_degree}, coeff bits {list(params.coeff_mod_bit_sizes)}, "
        f"scales 2^{params.encrypt_scale_bits} x 2^{params.plain_scale_bits}, masks < "
        f"2^{params.mask_bits}; {rows:,} rows, {categories} categories ({n_enc} encrypted), "
        f"{groups} groups; median of {reps}:",
        "",
        "| operation | median s | throughput |",
        "|---|---|---|",
        f"| encrypt one-hot (bank) | {t_enc:.2f} | {rows * n_enc / t_enc:,.0f} values/s |",
        f"| open + validate payload (PNS) | {t_load:.2f} | {rows * n_enc / t_load:,.0f} values/s |",
        f"| ct x pt product, one ciphertext | {t_prod * 1e3:.3f} ms | {slots / t_prod:,.0f} "
        "values/s |",
        f"| grouped sums + masks (PNS) | {t_grp:.2f} | {rows * n_enc / t_grp:,.0f} values/s "
        f"({rows / t_grp:,.0f} rows/s) |",
        f"| decrypt masked table (bank) | {t_dec:.2f} | {n_cts * slots / t_dec:,.0f} slots/s |",
        f"| row-wise scores + masks (PNS) | {t_row:.2f} | {rows * n_enc / t_row:,.0f} values/s |",
        f"| decrypt masked rows (bank) | {t_drow:.2f} | {rows / t_drow:,.0f} values/s |",
        "",
        f"Bytes: one-hot payload {len(payload):,} ({len(payload) / rows:.1f} B/row); masked "
        f"table {len(table_bytes):,}; masked rows {len(rows_bytes):,}; public context "
        f"{len(keys.public_context_bytes()):,}. Grouped counts exact: {exact}.",
        "",
    ]


def _product_time(ctx, opened: EncryptedColumns, reps: int) -> float:
    suite = ctx.suite
    plain, out = seal.Plaintext(), seal.Ciphertext()
    suite.encoder.encode([1.0] * ctx.params.slot_count, suite.data_parms_id,
                         float(2**ctx.params.plain_scale_bits), plain)
    ct = opened._cts[0][0]

    def run() -> None:
        for _ in range(50):
            suite.evaluator.multiply_plain(ct, plain, out)

    return _median_time(run, reps)[0] / 50


def bench_precision() -> list[str]:
    """Worst distance of a decrypted slot from its integer, with and without the flood."""
    lines = ["Precision (one run, 40 chunks, 3 groups; largest distance of a decrypted slot "
             "from its integer):", ""]
    for label, params in [("default", CKKSParams()),
                          ("flood off, 16-bit masks", CKKSParams(flood_bits=0, mask_bits=16)),
                          ("flood on, 16-bit masks", CKKSParams(mask_bits=16))]:
        keys = CKKSKeyPair.generate(params)
        rng = np.random.default_rng(1)
        n = params.slot_count * 40
        enc = EncryptedColumns.from_bytes(
            encrypt_onehot(keys, rng.integers(0, 4, n), 4).to_bytes(), keys.public_context())
        table = grouped_sums(enc, rng.integers(0, 3, n), 3).ciphertext_bytes()
        worst = 0.0
        for blob in framing.unpack(table, "ckks-masked-table")[1]:
            ct = _sealio.load_into(seal.Ciphertext(), keys.suite.context, blob, "bench")
            plain = seal.Plaintext()
            keys.decryptor.decrypt(ct, plain)
            values = np.asarray(keys.suite.encoder.decode_double(plain))
            worst = max(worst, float(np.abs(values - np.round(values)).max()))
        lines.append(f"- {label}: {worst:.3g} (= 2^{np.log2(worst):.1f})")
    return [*lines, ""]


def _secagg_row(n_parties: int, size: int, reps: int) -> str:
    names = [f"p{i:02d}" for i in range(n_parties)]
    members = {p: SecAggParticipant(p, E2EIdentity.generate()) for p in names}
    publics = {p: m.identity.public_bytes() for p, m in members.items()}
    vec = np.arange(size, dtype=np.int64)
    first = members[names[0]]
    t_party, blob = _median_time(lambda: first.masked_input(vec, names, "bench", publics), reps)
    inputs = {p: members[p].masked_input(vec, names, "bench", publics) for p in names}
    t_agg, total = _median_time(lambda: aggregate(inputs, names, "bench"), reps)
    if not np.array_equal(total.view(np.int64), vec * n_parties):
        raise RuntimeError("secure aggregation returned a wrong sum")
    return f"| {n_parties} | {size:,} | {t_party:.4f} | {t_agg:.4f} | {len(blob):,} |"


def bench_secagg(parties_list: list[int], sizes: list[int], reps: int) -> list[str]:
    lines = ["Secure aggregation (ChaCha20 masks, uint64 ring), median of "
             f"{reps}; per-party time = one party's masked_input; aggregate = receiver:", "",
             "| parties | values | per-party s | aggregate s | bytes per input |",
             "|---|---|---|---|---|"]
    lines += [_secagg_row(n, size, reps) for n in parties_list for size in sizes]
    return [*lines, ""]


def bench_mpc(sizes: list[int], reps: int) -> list[str]:
    lines = [f"CrypTen two-party comparison (TTP dealer, 3 local processes), median of {reps}:",
             "", "| comparisons | protocol s | with process start s | comparisons/s |",
             "|---|---|---|---|"]
    rng = np.random.default_rng(2)
    for size in sizes:
        fixed = rng.integers(-(2**17), 2**17, size)
        mask = rng.integers(0, 2**44, size)
        runs = [secure_threshold(-mask, fixed + mask, 0.5) for _ in range(reps)]
        if not all(np.array_equal(r.labels, fixed / 2**16 > 0.5) for r in runs):
            raise RuntimeError("secure comparison returned wrong labels")
        comp = statistics.median(r.compute_seconds for r in runs)
        wall = statistics.median(r.seconds for r in runs)
        lines.append(f"| {size:,} | {comp:.3f} | {wall:.1f} | {size / comp:,.0f} |")
    return [*lines, ""]


def bench_dp(size: int, reps: int) -> list[str]:
    rng = SecureRandom()
    bits = np.zeros(size, dtype=bool)
    cases = {
        "uniform (ChaCha20)": lambda: rng.uniform(size),
        "Gaussian": lambda: gaussian_noise(size, 1.0, rng),
        "Skellam, variance 100": lambda: skellam_noise(size, 100.0, rng),
        "Skellam, variance 10^6": lambda: skellam_noise(size, 1e6, rng),
        "randomized response": lambda: randomized_response(bits, 1.0, rng),
    }
    lines = [f"DP sampling ({size:,} draws, median of {reps}):", "",
             "| sampler | draws/s |", "|---|---|"]
    for name, fn in cases.items():
        lines.append(f"| {name} | {size / _median_time(fn, reps)[0]:,.0f} |")
    return [*lines, ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--groups", type=int, default=30)
    parser.add_argument("--categories", type=int, default=4)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--secagg-max", type=int, default=1_000_000)
    parser.add_argument("--mpc-sizes", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    sizes = [s for s in (1_000, 10_000, 100_000, 1_000_000) if s <= args.secagg_max]
    sections = [
        ("CKKS", lambda: bench_ckks(args.rows, args.groups, args.categories, args.reps)),
        ("precision", bench_precision),
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
