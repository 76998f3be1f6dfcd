"""The persisted RS256 key that signs ID tokens, and its public JWKS.

Created on first use as a PEM file readable by the service's user only (O_EXCL, so two
workers starting at once agree on one key). Keycloak caches the JWKS by `kid`, which is
the key's RFC 7638 thumbprint: replacing the file rotates the key.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

from joserfc.jwk import RSAKey

from provider.config import ConfigError

KEY_BITS = 2048


@cache
def load_signing_key(path: str) -> RSAKey:
    file = Path(path)
    if not file.exists():
        file.parent.mkdir(parents=True, exist_ok=True)
        pem = RSAKey.generate_key(KEY_BITS, private=True).as_pem(private=True)
        # Written whole under a private name, then linked into place: a worker that
        # loses the race reads the winner's complete key, never a half-written one.
        fd, temp = tempfile.mkstemp(dir=file.parent, prefix=".oidc-key-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(pem)
            with contextlib.suppress(FileExistsError):
                os.link(temp, file)
        finally:
            os.unlink(temp)
    if file.stat().st_mode & 0o077:
        raise ConfigError(f"UMPASS_OIDC_KEY_FILE {path} is readable by others: chmod 600 it")
    key = RSAKey.import_key(file.read_bytes())
    if not key.is_private:
        raise ValueError(f"{path} holds no private key")
    key.ensure_kid()
    return key


def public_jwks(key: RSAKey) -> dict[str, Any]:
    public = key.as_dict(private=False)
    return {"keys": [{**public, "use": "sig", "alg": "RS256", "kid": key.kid}]}
