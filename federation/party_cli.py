"""`pv4fad party init | policy`: what each party does on its own machine before joining.

`init` makes the party's X25519 identity (its private key stays on that machine) and prints
the public key, which the other parties pin. `policy` writes the party's privacy policy:
the pinned keys of everyone it talks to and the limits it serves requests within
(federation/policy.py). Compare public keys out of band (in person, by a signed letter, or
by reading the fingerprint aloud); the coordinator never relays them.
"""

from __future__ import annotations

import argparse
import hashlib
from dataclasses import fields
from pathlib import Path

from federation.errors import Pv4fadError
from federation.policy import PrivacyPolicy


def register(subparsers: argparse._SubParsersAction) -> None:
    party = subparsers.add_parser("party", help="a party's identity key and privacy policy")
    actions = party.add_subparsers(dest="party_command", required=True, metavar="ACTION")

    init = actions.add_parser("init", help="make this party's X25519 identity")
    init.add_argument("--out", type=Path, required=True,
                      help="directory for identity.key (created; never overwritten)")
    init.add_argument("--json", action="store_true")
    init.set_defaults(func=_init)

    policy = actions.add_parser("policy", help="write this party's privacy policy")
    policy.add_argument("--out", type=Path, required=True, help="policy file (JSON)")
    policy.add_argument("--pin", action="append", default=[], metavar="PARTY=PUBLIC_KEY",
                        help="a peer's X25519 public key (hex), from `party init` on its side")
    defaults = PrivacyPolicy()
    for f in fields(PrivacyPolicy):
        if f.name in ("pinned_keys", "allow_plaintext"):
            continue
        policy.add_argument(f"--{f.name.replace('_', '-')}", type=_number,
                            default=getattr(defaults, f.name), metavar="N",
                            help=f"default {getattr(defaults, f.name)}")
    policy.add_argument("--allow-plaintext", action="store_true",
                        help="serve runs with the cryptography off (cost measurements only)")
    policy.add_argument("--json", action="store_true")
    policy.set_defaults(func=_policy)


def _number(text: str) -> float | None:
    if text.lower() == "none":
        return None
    try:
        return float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a number or none, got {text!r}") from exc


def fingerprint(public_key: bytes) -> str:
    """A short, readable digest of a public key for comparing it out of band."""
    digest = hashlib.sha256(public_key).hexdigest()[:20]
    return " ".join(digest[i:i + 4] for i in range(0, 20, 4))


def _init(args: argparse.Namespace) -> int:
    from crypto.channel import IDENTITY_FILE, E2EIdentity
    from federation.cli import emit
    from federation.transcript import SIGNING_KEY_FILE, load_signing_key, public_key_hex

    path = args.out / IDENTITY_FILE
    if path.exists():
        raise Pv4fadError(f"party init: {path} exists; a party keeps its identity (remove it "
                          "only to rotate keys, and then every peer must pin the new one)")
    identity = E2EIdentity.generate()
    identity.save(path)
    public = identity.public_bytes()
    # The Ed25519 key that signs this party's ledger; an auditor pins its public half
    # (`pv4fad audit --keys`).
    ledger_key = public_key_hex(load_signing_key(args.out / SIGNING_KEY_FILE))
    emit({"identity": str(path), "public_key": public.hex(), "fingerprint": fingerprint(public),
          "ledger_key": ledger_key},
         args.json, f"identity written to {path}\npublic key {public.hex()}\n"
                    f"fingerprint {fingerprint(public)} (compare it with your peers out of band)"
                    f"\nledger-signing key {ledger_key} (give it to your auditor)")
    return 0


def _policy(args: argparse.Namespace) -> int:
    from federation.cli import emit

    pins = {}
    for item in args.pin:
        party, sep, key = item.partition("=")
        if not sep or not party:
            raise Pv4fadError(f"party policy: --pin expects PARTY=PUBLIC_KEY, got {item!r}")
        pins[party] = key.strip().lower()
    values = {f.name: getattr(args, f.name) for f in fields(PrivacyPolicy)
              if f.name not in ("pinned_keys", "allow_plaintext")}
    for name in ("max_rows_per_account", "max_groups"):
        if values[name] is not None:
            values[name] = int(values[name])
    policy = PrivacyPolicy(pinned_keys=pins, allow_plaintext=args.allow_plaintext, **values)
    policy.save(args.out)
    emit({"policy": str(args.out), **policy.to_json()}, args.json,
         f"policy written to {args.out}: pins {', '.join(sorted(pins)) or 'no one'}")
    return 0
