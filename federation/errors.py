"""Project errors: one line that names what failed, where, and what was expected.

Exit codes of the `pv4fad` command (README.md, "Exit codes"): an operator's script can
tell a bad invocation from a privacy failure from a run that lost parties.
"""

EXIT_OK = 0
EXIT_PRIVACY_CHECK = 1  # the run finished, but a who-may-learn-what check failed
EXIT_INPUT = 2  # bad input or a refused configuration (argparse's usage errors too)
EXIT_PARTY_FAILED = 3  # a party failed: degraded run (without --allow-degraded) or no run
EXIT_INTERNAL = 4  # an unexpected error (a bug): one line, the traceback with PV4FAD_DEBUG=1
EXIT_INTERRUPTED = 130  # Ctrl-C / SIGTERM (128 + SIGINT, as shells report it)


class Pv4fadError(Exception):
    """Base class; the CLI prints its message on one line and exits with `exit_code`."""

    exit_code = EXIT_INPUT


class DataError(Pv4fadError):
    """Input data does not match the challenge format (file, row/column, expected, found)."""


class CryptoError(Pv4fadError):
    """A ciphertext, key or authenticated payload failed a check."""


class ProtocolError(Pv4fadError):
    """A party, message or run state broke the protocol (dead party, bad phase, ...)."""


class PartyFailure(ProtocolError):
    """The run could not finish because parties failed (each named with its cause)."""

    exit_code = EXIT_PARTY_FAILED
