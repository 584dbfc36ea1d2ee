"""Bytes in and out of SEAL objects.

TenSEAL's low-level SEAL bindings save and load only through file paths, so objects go
through a private temporary directory (in memory under /dev/shm where it exists). Every
SEAL failure while loading becomes a CryptoError that names what was being read.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path
from typing import Any

from federation.errors import CryptoError

_SHM = Path("/dev/shm")
_local = threading.local()


def _scratch() -> Path:
    """A per-thread scratch file path, created on first use."""
    path = getattr(_local, "path", None)
    if path is None:
        base = _SHM if _SHM.is_dir() and os.access(_SHM, os.W_OK) else None
        directory = tempfile.mkdtemp(prefix="pv4fad-seal-", dir=base)
        os.chmod(directory, 0o700)  # secret keys pass through here
        path = Path(directory) / "obj"
        _local.path = path
    return path


def dump(obj: Any) -> bytes:
    """Serialize a SEAL object (or a seal::Serializable) to bytes."""
    path = _scratch()
    try:
        obj.save(str(path))
        return path.read_bytes()
    finally:
        path.unlink(missing_ok=True)


def load_into(obj: Any, seal_context: Any, data: bytes, what: str) -> Any:
    """Load `data` into the empty SEAL object `obj`; SEAL validates it against the context."""
    path = _scratch()
    try:
        path.write_bytes(data)
        obj.load(seal_context, str(path))
    except Exception as exc:  # SEAL raises ValueError/RuntimeError/logic_error variants
        raise CryptoError(f"{what}: not a valid SEAL object for these parameters ({exc})") from exc
    finally:
        path.unlink(missing_ok=True)
    return obj
