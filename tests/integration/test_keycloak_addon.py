"""The authenticator JAR from keycloak_addon/: compiled with javac against the project's
Keycloak distribution, the same bytes from the same sources, and a changed JAR builds an
optimized server again (a stale `kc.sh build` would run without it)."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest
from devstack import keycloak as kc_server
from devstack import keycloak_addon

FACTORY = "org.umpass.keycloak.LoginHintFromUserAuthenticatorFactory"
GATE_FACTORY = "org.umpass.keycloak.PolicyGateAuthenticatorFactory"
CIBA_FACTORY = "org.umpass.keycloak.PendingRefusingCibaUserResolverFactory"
GRANT_FACTORY = "org.umpass.keycloak.PendingRefusingCibaGrantTypeFactory"


@pytest.fixture(scope="module")
def distribution() -> Path:
    return kc_server.install("test")


def test_the_jar_declares_the_authenticator_and_is_reproducible(
    distribution: Path, tmp_path: Path
) -> None:
    first = keycloak_addon.build(distribution, tmp_path / "a", kc_server.KEYCLOAK_VERSION)
    second = keycloak_addon.build(distribution, tmp_path / "b", kc_server.KEYCLOAK_VERSION)
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as jar:
        names = set(jar.namelist())
        services = "META-INF/services/org.keycloak.authentication.AuthenticatorFactory"
        assert jar.read(services).decode().split() == [FACTORY, GATE_FACTORY]
        ciba = "META-INF/services/" + (
            "org.keycloak.protocol.oidc.grants.ciba.resolvers.CIBALoginUserResolverFactory"
        )
        assert jar.read(ciba).decode().split() == [CIBA_FACTORY]
        grants = "META-INF/services/org.keycloak.protocol.oidc.grants.OAuth2GrantTypeFactory"
        assert jar.read(grants).decode().split() == [GRANT_FACTORY]
    assert {
        "org/umpass/keycloak/LoginHintFromUserAuthenticator.class",
        "org/umpass/keycloak/LoginHintFromUserAuthenticatorFactory.class",
        "org/umpass/keycloak/PolicyGateAuthenticator.class",
        "org/umpass/keycloak/PolicyGateAuthenticatorFactory.class",
        "org/umpass/keycloak/PendingRefusingCibaUserResolver.class",
        "org/umpass/keycloak/PendingRefusingCibaUserResolverFactory.class",
        "org/umpass/keycloak/PendingRefusingCibaGrantType.class",
        "org/umpass/keycloak/PendingRefusingCibaGrantTypeFactory.class",
    } <= names


def test_a_changed_jar_builds_the_optimized_server_again(
    distribution: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UMPASS_CACHE_DIR", str(tmp_path / "cache"))
    # A Keycloak home whose kc.sh only notes each build; its libraries are the real ones.
    home = tmp_path / "keycloak"
    (home / "bin").mkdir(parents=True)
    (home / "lib" / "lib").mkdir(parents=True)
    (home / "lib" / "lib" / "main").symlink_to(distribution / "lib" / "lib" / "main")
    builds = tmp_path / "builds.log"
    kc_sh = home / "bin" / "kc.sh"
    kc_sh.write_text(f'#!/bin/sh\necho "$@" >> {builds}\n')
    kc_sh.chmod(0o755)

    def built() -> list[str]:
        return builds.read_text().splitlines() if builds.exists() else []

    kc_server.build_optimized(home, ["--db=dev-mem"])
    kc_server.build_optimized(home, ["--db=dev-mem"])
    assert built() == ["build --db=dev-mem"]  # once: nothing changed in between
    placed = home / "providers" / keycloak_addon.JAR_NAME
    before = placed.read_bytes()

    # The authenticator changes (a copy of its sources, edited). A comment alone compiles
    # to the same JAR: no build; a changed class does.
    sources = tmp_path / "login-hint"
    shutil.copytree(keycloak_addon.ADDON_DIR, sources)
    monkeypatch.setattr(keycloak_addon, "ADDON_DIR", sources)
    factory = next(sources.rglob("LoginHintFromUserAuthenticatorFactory.java"))
    factory.write_text(factory.read_text() + "\n// a comment\n")
    kc_server.build_optimized(home, ["--db=dev-mem"])
    assert built() == ["build --db=dev-mem"] and placed.read_bytes() == before
    factory.write_text(factory.read_text().replace("UMPASS: pass", "UMPASS (changed): pass"))
    kc_server.build_optimized(home, ["--db=dev-mem"])
    assert built() == ["build --db=dev-mem", "build --db=dev-mem"]
    assert placed.read_bytes() != before
