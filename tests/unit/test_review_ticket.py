"""The policy gate's ticket, checked claim by claim (provider/policies/review_ticket.py): a
key the realm publishes, an asymmetric algorithm, the realm as issuer, the gate as type and
audience, not expired, a callback inside the realm's sign-in pages. The real Keycloak's
tickets are tested in tests/integration/test_policy_gate.py."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from provider.policies.review_ticket import HEADER_TYPE, TICKET_TYPE, InvalidTicket, verify

REALM = "https://sso.example.edu/realms/campus"
KEY = RSAKey.generate_key(2048, parameters={"kid": "realm-key"})


class Published:
    """The realm's JWKS as RealmKeys serves it: public keys only."""

    def __init__(self, *keys: RSAKey) -> None:
        self.keys = KeySet.import_key_set(KeySet(list(keys)).as_dict(private=False))

    def get(self, kid: str | None) -> KeySet:
        return self.keys


def _claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": REALM,
        "aud": TICKET_TYPE,
        "typ": TICKET_TYPE,
        "sub": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
        "jti": "ticket-1",
        "iat": now,
        "exp": now + 600,
        "due": ["it-acceptable-use@2027-01"],
        "callback": f"{REALM}/login-actions/authenticate?session_code=x&execution=y",
        "locale": "zh-TW",
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _signed(claims: dict[str, Any], key: RSAKey = KEY, typ: str | None = HEADER_TYPE) -> str:
    header = {"alg": "RS256", "kid": key.kid, **({"typ": typ} if typ else {})}
    return jwt.encode(header, claims, key)


def test_a_ticket_the_realm_signed_is_read() -> None:
    ticket = verify(_signed(_claims()), keys=Published(KEY), realm_url=REALM)
    assert ticket.account_id == "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
    assert ticket.due == ("it-acceptable-use@2027-01",)
    assert ticket.callback.startswith(REALM + "/login-actions/")
    assert ticket.locale == "zh-TW" and ticket.id == "ticket-1"


@pytest.mark.parametrize(
    "changes",
    [
        {"iss": "https://sso.example.edu/realms/other"},
        {"aud": "account"},
        {"typ": "Bearer"},
        {"typ": None},
        {"exp": int(time.time()) - 120},
        {"exp": None},
        {"sub": None},
        {"jti": None},
        {"callback": "https://attacker.example/login-actions/authenticate"},
        {"callback": f"{REALM}-evil/login-actions/authenticate"},
        {"callback": f"{REALM}/protocol/openid-connect/auth"},
        {"callback": None},
        {"due": "it-acceptable-use@2027-01"},
        {"due": [7]},
    ],
    ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()),
)
def test_a_ticket_with_one_claim_wrong_is_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(InvalidTicket):
        verify(_signed(_claims(**changes)), keys=Published(KEY), realm_url=REALM)


@pytest.mark.parametrize("typ", [None, "JWT", "at+jwt"])
def test_a_token_of_another_type_is_refused(typ: str | None) -> None:
    """Signed by the realm with every claim right, but not typed a ticket in its header
    (an access token carries "JWT")."""
    with pytest.raises(InvalidTicket):
        verify(_signed(_claims(), typ=typ), keys=Published(KEY), realm_url=REALM)


def test_a_ticket_signed_by_another_key_is_refused() -> None:
    other = RSAKey.generate_key(2048, parameters={"kid": "realm-key"})
    with pytest.raises(InvalidTicket):
        verify(_signed(_claims(), other), keys=Published(KEY), realm_url=REALM)


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


@pytest.mark.parametrize("alg", ["none", "HS256"])
def test_no_symmetric_or_missing_signature_is_taken(alg: str) -> None:
    """HS256 keyed with the realm's *public* key (anyone has it) and "none": refused."""
    head = _b64(json.dumps({"alg": alg, "kid": "realm-key", "typ": HEADER_TYPE}).encode())
    body = _b64(json.dumps(_claims()).encode())
    public = json.dumps(KEY.as_dict(private=False)).encode()
    mac = hmac.new(public, head + b"." + body, hashlib.sha256).digest() if alg != "none" else b""
    with pytest.raises(InvalidTicket):
        verify(
            (head + b"." + body + b"." + _b64(mac)).decode(), keys=Published(KEY), realm_url=REALM
        )


@pytest.mark.parametrize("raw", ["", "a.b", "a.b.c.d", "x" * 9000, "é.é.é"])
def test_what_is_not_a_jwt_is_refused(raw: str) -> None:
    with pytest.raises(InvalidTicket):
        verify(raw, keys=Published(KEY), realm_url=REALM)
