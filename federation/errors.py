"""Project errors: one line that names what failed, where, and what was expected."""


class Pv4fadError(Exception):
    """Base class; the CLI prints its message on one line and exits non-zero."""


class DataError(Pv4fadError):
    """Input data does not match the challenge format (file, row/column, expected, found)."""


class CryptoError(Pv4fadError):
    """A ciphertext, key or authenticated payload failed a check."""


class ProtocolError(Pv4fadError):
    """A party, message or run state broke the protocol (dead party, bad phase, ...)."""
