"""`pv4fad crypto params | calibrate`: the CKKS parameter set and DP noise calibration."""

from __future__ import annotations

import argparse
from typing import Any

from federation.cli import emit


def register(subparsers: Any) -> None:
    crypto = subparsers.add_parser("crypto", help="crypto parameters and DP calibration")
    actions = crypto.add_subparsers(dest="crypto_command", required=True, metavar="ACTION")

    params = actions.add_parser("params", help="show the CKKS parameter set and its security")
    params.add_argument("--json", action="store_true", help="print one JSON object")
    params.set_defaults(func=_params)

    cal = actions.add_parser("calibrate", help="noise for a target (epsilon, delta)")
    cal.add_argument("--mechanism", choices=("gaussian", "skellam"), default="gaussian")
    cal.add_argument("--epsilon", type=float, required=True)
    cal.add_argument("--delta", type=float, default=1e-6)
    cal.add_argument("--sensitivity", type=float, default=1.0, help="L2 sensitivity")
    cal.add_argument("--compositions", type=int, default=1, help="number of releases")
    cal.add_argument("--parties", type=int, default=1, help="parties sharing the noise")
    cal.add_argument("--json", action="store_true", help="print one JSON object")
    cal.set_defaults(func=_calibrate)


def _params(args: argparse.Namespace) -> int:
    import tenseal.sealapi as seal

    from crypto.ckks_keys import CKKSParams

    params = CKKSParams()
    bound = seal.CoeffModulus.MaxBitCount(params.poly_modulus_degree, seal.SEC_LEVEL_TYPE.TC128)
    result = {
        **params.to_dict(),
        "param_id": params.param_id,
        "digits_per_polynomial": params.digits_per_poly,
        "flood_over_noise_bits": round(params.flood_bits - params.noise_bound_bits, 2),
        "coeff_modulus_bits": sum(params.coeff_mod_bit_sizes),
        "max_bits_128_bit_ternary": bound,
        "security": "128-bit classical, HE standard ternary-secret table",
    }
    human = (f"CKKS N={params.poly_modulus_degree}, modulus {result['coeff_modulus_bits']} bits "
             f"(<= {bound} for 128-bit security), count unit 2^{params.unit_bits}, flood "
             f"2^{params.flood_bits} over noise <= 2^{params.noise_bound_bits:.1f}, "
             f"param_id {params.param_id}")
    emit(result, args.json, human)
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from crypto.accountant import calibrate_gaussian_sigma, calibrate_skellam_variance

    if args.mechanism == "gaussian":
        sigma = calibrate_gaussian_sigma(args.epsilon, args.delta, args.sensitivity,
                                         args.compositions)
        variance = sigma**2
    else:
        variance = calibrate_skellam_variance(args.epsilon, args.delta, args.sensitivity,
                                              args.compositions)
    result = {
        "mechanism": args.mechanism,
        "epsilon": args.epsilon,
        "delta": args.delta,
        "sensitivity": args.sensitivity,
        "compositions": args.compositions,
        "variance": variance,
        "stddev": variance**0.5,
        "parties": args.parties,
        "variance_per_party": variance / max(args.parties, 1),
    }
    human = (f"{args.mechanism}: variance {variance:.6g} (stddev {variance**0.5:.6g}) for "
             f"epsilon {args.epsilon} at delta {args.delta} over {args.compositions} release(s); "
             f"{variance / max(args.parties, 1):.6g} per party")
    emit(result, args.json, human)
    return 0
