"""CKKS parameters, key pairs and public contexts (TenSEAL's SEAL bindings).

The bank owns the key pair; only the public context (parameters + public key, no
relinearization or Galois keys) leaves it. The PNS can encrypt zeros and evaluate
ciphertext-plaintext products with it, and cannot decrypt.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import tenseal.sealapi as seal

from crypto import _sealio, framing
from federation.errors import CryptoError
from federation.transcript import PayloadClass

# Largest slot magnitude that float64 decoding still resolves to well under 0.5: measured
# worst slot error at 2^44 is about 2^-7 (bench/bench_crypto.py, docs/security.md).
MAX_MASK_BITS = 46
_SUPPORTED_DEGREES = (8192, 16384, 32768)


@dataclass(frozen=True)
class CKKSParams:
    """CKKS parameter set; the defaults meet 128-bit security (HE standard, ternary secret).

    poly_modulus_degree N gives N/2 slots. The last coefficient prime is SEAL's special
    prime; the others form the data level. No rescaling ever happens, so a product of a
    ciphertext (scale 2^encrypt_scale_bits) and a plaintext (scale 2^plain_scale_bits)
    lives at scale 2^(encrypt+plain), and slot masks are integers below 2^mask_bits.
    flood_bits: log2 of the constant that multiplies a fresh encryption of zero added to
    every result, which floods the decryption noise that the key owner could analyse.
    Results are rescaled by the last data prime after masking (smaller replies).
    """

    poly_modulus_degree: int = 8192
    coeff_mod_bit_sizes: tuple[int, ...] = (60, 60, 60, 38)
    encrypt_scale_bits: int = 60
    plain_scale_bits: int = 56
    mask_bits: int = 44
    flood_bits: int = 96

    def __post_init__(self) -> None:
        object.__setattr__(self, "coeff_mod_bit_sizes", tuple(self.coeff_mod_bit_sizes))
        self.validate()

    @property
    def slot_count(self) -> int:
        return self.poly_modulus_degree // 2

    @property
    def data_bits(self) -> int:
        return sum(self.coeff_mod_bit_sizes[:-1])

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
        """Refuse sets below 128-bit security or whose masks would overflow precision."""
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
        if not 1 <= self.mask_bits <= MAX_MASK_BITS:
            raise CryptoError(f"CKKS parameters: mask_bits must be in [1, {MAX_MASK_BITS}]")
        # The flood (about 2^(flood_bits + 4) per coefficient) must stay 2^20 below the
        # product scale so that it moves no slot by more than about 2^-9 (one sigma).
        if not 0 <= self.flood_bits <= self.encrypt_scale_bits + self.plain_scale_bits - 20:
            raise CryptoError(
                "CKKS parameters: flood_bits must be in [0, encrypt + plain scale bits - 20]"
            )
        # Replies are rescaled by the last data prime once masked; keep 2^16 of scale after it.
        if self.encrypt_scale_bits + self.plain_scale_bits - self.coeff_mod_bit_sizes[-2] < 16:
            raise CryptoError("CKKS parameters: product scale too small to rescale replies")
        # Headroom: sign bit, up to 2^16 accumulated chunks times weights, rounding margin.
        needed = self.encrypt_scale_bits + self.plain_scale_bits + self.mask_bits + 20
        if needed > self.data_bits:
            raise CryptoError(
                f"CKKS parameters: scales and mask need {needed} bits, data level has "
                f"{self.data_bits}"
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
    """Parameters + public key of one bank: encrypts zeros, evaluates, never decrypts."""

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
    """A bank's CKKS secret key and public key; `save`/`load` keep it in the bank's directory."""

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
