"""CKKS parameters, key pairs and public contexts (TenSEAL's SEAL bindings).

The PNS owns the key pair, fresh for every training stage; only the public context
(parameters + public key, no relinearization or Galois keys) leaves it. A bank can
evaluate ciphertext-plaintext products and encrypt zeros with it, and cannot decrypt.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import tenseal.sealapi as seal

from crypto import _sealio, framing
from federation.errors import CryptoError
from federation.transcript import PayloadClass

_SUPPORTED_DEGREES = (8192, 16384, 32768)
# Largest coefficient of SEAL's encryption noise (centred binomial / clipped normal with
# sigma 3.2; SEAL never samples beyond 6 sigma).
ENCRYPTION_NOISE_MAX = 21
# Statistical distance the flood must reach per returned ciphertext: 2^-STAT_BITS.
STAT_BITS = 40


@dataclass(frozen=True)
class CKKSParams:
    """CKKS parameter set of the joint counts; the defaults meet 128-bit security (HE
    standard, ternary secret).

    poly_modulus_degree N: rows per chunk (one polynomial coefficient per row). The last
    coefficient prime is SEAL's special prime; the others form the data level, modulus Q.
    unit_bits: one count is 2^unit_bits in the constant coefficient of a reply.
    flood_bits: the bank adds a flood uniform on [0, 2^flood_bits) to that coefficient;
      it must exceed the largest data-dependent noise there by 2^STAT_BITS.
    digit_bits: group counts are packed as signed digits of this width, as many per
      polynomial as fit above the unit.
    max_chunks: the most chunks (of N rows) one request may hold; the flood bound is proven
      up to there, and banks refuse more.
    max_parties: the most banks whose floods may add up in one sum while staying below a
      quarter of a unit (so the sum still rounds to the right count).
    """

    poly_modulus_degree: int = 8192
    coeff_mod_bit_sizes: tuple[int, ...] = (60, 60, 60, 38)
    unit_bits: int = 79
    flood_bits: int = 70
    digit_bits: int = 25
    max_chunks: int = 1024
    max_parties: int = 128

    def __post_init__(self) -> None:
        object.__setattr__(self, "coeff_mod_bit_sizes", tuple(self.coeff_mod_bit_sizes))
        self.validate()

    @property
    def data_bits(self) -> int:
        return sum(self.coeff_mod_bit_sizes[:-1])

    @property
    def digits_per_poly(self) -> int:
        """Group counts packed into one polynomial (one sign bit of headroom)."""
        return (self.data_bits - 1 - self.unit_bits) // self.digit_bits

    @property
    def noise_bound_bits(self) -> float:
        """log2 of the largest data-dependent noise in a reply's constant coefficient:
        every chunk adds at most ENCRYPTION_NOISE_MAX * N (noise times 0/1 status bits)."""
        return math.log2(ENCRYPTION_NOISE_MAX * self.poly_modulus_degree * self.max_chunks)

    @property
    def param_id(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["coeff_mod_bit_sizes"] = list(self.coeff_mod_bit_sizes)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CKKSParams:
        try:
            return cls(**data)
        except TypeError as exc:
            raise CryptoError(f"CKKS parameters: unreadable parameter set ({exc})") from exc

    def validate(self) -> None:
        """Refuse sets below 128-bit security, or whose flood, unit and digits do not fit."""
        n = self.poly_modulus_degree
        if n not in _SUPPORTED_DEGREES:
            raise CryptoError(
                f"CKKS parameters: poly_modulus_degree {n} not in {_SUPPORTED_DEGREES}"
            )
        bound = seal.CoeffModulus.MaxBitCount(n, seal.SEC_LEVEL_TYPE.TC128)
        total = sum(self.coeff_mod_bit_sizes)
        if len(self.coeff_mod_bit_sizes) < 2 or total > bound:
            raise CryptoError(
                f"CKKS parameters: coefficient modulus of {total} bits for N={n} exceeds the "
                f"128-bit bound of {bound} bits (HE standard, ternary secret)"
            )
        if self.max_chunks < 1 or self.max_parties < 1 or self.digit_bits < 2:
            raise CryptoError("CKKS parameters: max_chunks, max_parties >= 1, digit_bits >= 2")
        if self.flood_bits < self.noise_bound_bits + STAT_BITS:
            raise CryptoError(
                f"CKKS parameters: a flood of 2^{self.flood_bits} does not drown noise up to "
                f"2^{self.noise_bound_bits:.1f} by 2^{STAT_BITS} (lower max_chunks)"
            )
        if self.unit_bits < self.flood_bits + math.ceil(math.log2(self.max_parties)) + 2:
            raise CryptoError("CKKS parameters: the floods of max_parties replies must stay "
                              "below a quarter of a unit (raise unit_bits)")
        if self.digits_per_poly < 1:
            raise CryptoError(
                f"CKKS parameters: no {self.digit_bits}-bit digit fits above a 2^"
                f"{self.unit_bits} unit in a {self.data_bits}-bit data level"
            )


@dataclass
class _Suite:
    """SEAL objects shared by everything that uses one parameter set."""

    params: CKKSParams
    context: Any = field(init=False)
    encoder: Any = field(init=False)
    evaluator: Any = field(init=False)

    def __post_init__(self) -> None:
        enc_params = seal.EncryptionParameters(seal.SCHEME_TYPE.CKKS)
        enc_params.set_poly_modulus_degree(self.params.poly_modulus_degree)
        enc_params.set_coeff_modulus(
            seal.CoeffModulus.Create(
                self.params.poly_modulus_degree, list(self.params.coeff_mod_bit_sizes)
            )
        )
        self.context = seal.SEALContext(enc_params, True, seal.SEC_LEVEL_TYPE.TC128)
        if not self.context.parameters_set():
            raise CryptoError(
                f"CKKS parameters rejected by SEAL: {self.context.parameters_error_message()}"
            )
        self.encoder = seal.CKKSEncoder(self.context)
        self.evaluator = seal.Evaluator(self.context)

    @property
    def data_parms_id(self) -> list[int]:
        return self.context.first_parms_id()


def _key_id(public_key_bytes: bytes) -> str:
    return hashlib.sha256(public_key_bytes).hexdigest()[:16]


class PublicContext:
    """Parameters + public key of the key owner: encrypts zeros, evaluates, never decrypts."""

    payload_class = PayloadClass.PUBLIC

    def __init__(self, params: CKKSParams, public_key_bytes: bytes) -> None:
        self.params = params
        self.suite = _Suite(params)
        self.key_id = _key_id(public_key_bytes)
        self._public_key_bytes = public_key_bytes
        public_key = _sealio.load_into(
            seal.PublicKey(), self.suite.context, public_key_bytes, "CKKS public key"
        )
        self.encryptor = seal.Encryptor(self.suite.context, public_key)

    def to_bytes(self) -> bytes:
        header = {"params": self.params.to_dict(), "key_id": self.key_id}
        return framing.pack("ckks-public-context", header, [self._public_key_bytes])

    @classmethod
    def from_bytes(cls, data: bytes) -> PublicContext:
        header, blobs = framing.unpack(data, "ckks-public-context")
        if len(blobs) != 1:
            raise CryptoError(f"ckks-public-context: expected 1 key blob, found {len(blobs)}")
        ctx = cls(CKKSParams.from_dict(header.get("params", {})), blobs[0])
        framing.expect(header, "key_id", ctx.key_id, "ckks-public-context")
        return ctx


class CKKSKeyPair:
    """The PNS's CKKS secret key and public key; `save`/`load` keep it in its own directory."""

    def __init__(self, suite: _Suite, secret_key: Any, public_key_bytes: bytes) -> None:
        """Use `generate()` or `load()`; this wires already-validated SEAL objects."""
        self.params = suite.params
        self.suite = suite
        self._secret_key = secret_key
        self._public_key_bytes = public_key_bytes
        self.key_id = _key_id(public_key_bytes)
        self.decryptor = seal.Decryptor(suite.context, secret_key)
        self.encryptor = seal.Encryptor(suite.context, secret_key)

    @classmethod
    def generate(cls, params: CKKSParams | None = None) -> CKKSKeyPair:
        """Fresh keys; SEAL samples them from its own CSPRNG (Blake2xb seeded by the OS)."""
        suite = _Suite(params or CKKSParams())
        keygen = seal.KeyGenerator(suite.context)
        public_key = seal.PublicKey()
        keygen.create_public_key(public_key)
        public_key_bytes = _sealio.dump(public_key)
        return cls(suite, keygen.secret_key(), public_key_bytes)

    def public_context_bytes(self) -> bytes:
        """Serialized public context: parameters and public key only (no evaluation keys)."""
        header = {"params": self.params.to_dict(), "key_id": self.key_id}
        return framing.pack("ckks-public-context", header, [self._public_key_bytes])

    def public_context(self) -> PublicContext:
        return PublicContext.from_bytes(self.public_context_bytes())

    def save(self, path: str | Path) -> None:
        """Write the secret context to `path`, readable by the owner only."""
        header = {"params": self.params.to_dict(), "key_id": self.key_id}
        blobs = [_sealio.dump(self._secret_key), self._public_key_bytes]
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(framing.pack("ckks-secret-context", header, blobs))

    @classmethod
    def load(cls, path: str | Path) -> CKKSKeyPair:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise CryptoError(f"CKKS secret context {path}: cannot read ({exc})") from exc
        header, blobs = framing.unpack(data, "ckks-secret-context")
        if len(blobs) != 2:
            raise CryptoError(f"CKKS secret context {path}: expected 2 key blobs")
        suite = _Suite(CKKSParams.from_dict(header.get("params", {})))
        secret_key = _sealio.load_into(
            seal.SecretKey(), suite.context, blobs[0], f"CKKS secret key in {path}"
        )
        keys = cls(suite, secret_key, blobs[1])
        framing.expect(header, "key_id", keys.key_id, f"CKKS secret context {path}")
        return keys
