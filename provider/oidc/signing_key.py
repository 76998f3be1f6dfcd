"""The persisted RS256 key that signs ID tokens, and its public JWKS.

Created on first use as a PEM file readable by the service's user only (O_EXCL, so two
workers starting at once agree on one key). Keycloak caches the JWKS by `kid`, which is
the key's RFC 7638 thumbprint: replacing the file rotates the key.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

from joserfc.jwk import RSAKey

KEY_BITS = 2048


@cache
def load_signing_key(path: str) -> RSAKey:
    file = Path(path)
    if not file.exists():
        file.parent.mkdir(parents=True, exist_ok=True)
        pem = RSAKey.generate_key(KEY_BITS, private=True).as_pem(private=True)
        try:
            fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another worker wrote it first: use theirs
        else:
            with os.fdopen(fd, "wb") as out:
                out.write(pem)
    key = RSAKey.import_key(file.read_bytes())
    if not key.is_private:
        raise ValueError(f"{path} holds no private key")
    key.ensure_kid()
    return key


def public_jwks(key: RSAKey) -> dict[str, Any]:
    public = key.as_dict(private=False)
    return {"keys": [{**public, "use": "sig", "alg": "RS256", "kid": key.kid}]}
