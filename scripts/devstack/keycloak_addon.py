"""The project's one Keycloak extension (a JAR), built from keycloak_addon/ without Maven.

`keycloak_addon/login-hint/` holds a small authenticator that passes the user ID typed at
Keycloak's username form on to the activation service as `login_hint`, the policy gate,
and the CIBA user resolver and grant that refuse a pending account (see their Java
docs). It is compiled with the JDK's `javac` against the very distribution that runs it
(`<home>/lib/lib/main/*`: nothing is downloaded), zipped into a JAR, and cached under
`$UMPASS_CACHE_DIR/keycloak-addon/` by a hash of its sources and the Keycloak version.

Every Keycloak this project starts gets it in `providers/` before `kc.sh build` or
`start-dev` (`install_into`); the build stamps of the optimized servers include the
JAR's hash, so a changed authenticator rebuilds them.

    scripts/keycloak addon [--keycloak-home DIR] [--out FILE]

builds it (against the project's own distribution unless `--keycloak-home` names
another) and prints where the JAR is, for a university to copy into its servers.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ADDON_DIR = Path(__file__).resolve().parents[2] / "keycloak_addon" / "login-hint"
JAR_NAME = "umpass-login-hint.jar"
PROVIDER_ID = "umpass-login-hint-from-user"  # keycloak_config.flow_merge.LOGIN_HINT_STEP
JAVA_RELEASE = "17"  # the oldest Java that Keycloak 26 runs on
# Fixed entry times: the same sources give the same bytes, so the same hash.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class AddonBuildError(Exception):
    """The JAR could not be built; the message says what to fix."""


def _sources() -> list[Path]:
    return sorted(p for p in (ADDON_DIR / "src").rglob("*") if p.is_file())


def source_hash(keycloak_version: str) -> str:
    digest = hashlib.sha256(f"keycloak {keycloak_version}\n".encode())
    for path in _sources():
        digest.update(str(path.relative_to(ADDON_DIR)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _javac() -> str:
    java_home = os.environ.get("JAVA_HOME")
    candidates = [Path(java_home) / "bin" / "javac"] if java_home else []
    found = shutil.which("javac")
    candidates += [Path(found)] if found else []
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    raise AddonBuildError(
        "no Java compiler (javac) found: apt-get install -y openjdk-17-jdk-headless "
        "(or set JAVA_HOME to a JDK)"
    )


def build(kc_home: Path, cache: Path, keycloak_version: str) -> Path:
    """The JAR for these sources and this Keycloak version, compiled once per cache."""
    target = cache / "keycloak-addon" / f"umpass-login-hint-{source_hash(keycloak_version)}.jar"
    if target.exists():
        return target
    libraries = kc_home / "lib" / "lib" / "main"
    if not libraries.is_dir():
        raise AddonBuildError(f"{kc_home} is not a Keycloak distribution (no lib/lib/main)")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="umpass-addon-") as work:
        classes = Path(work) / "classes"
        java_files = [str(p) for p in _sources() if p.suffix == ".java"]
        result = subprocess.run(
            [
                _javac(),
                "--release",
                JAVA_RELEASE,
                "-Xlint:all",
                "-Werror",
                "-encoding",
                "UTF-8",
                "-cp",
                f"{libraries}/*",  # javac expands the wildcard itself
                "-d",
                str(classes),
                *java_files,
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        if result.returncode != 0:
            raise AddonBuildError(
                f"javac refused keycloak_addon/login-hint: {(result.stdout + result.stderr)[-800:]}"
            )
        partial = target.with_suffix(".partial")
        _write_jar(partial, classes, ADDON_DIR / "src" / "main" / "resources")
        partial.replace(target)
    return target


def _write_jar(jar: Path, *roots: Path) -> None:
    entries = {"META-INF/MANIFEST.MF": b"Manifest-Version: 1.0\r\nCreated-By: umpass\r\n\r\n"}
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            entries[path.relative_to(root).as_posix()] = path.read_bytes()
    with zipfile.ZipFile(jar, "w", zipfile.ZIP_DEFLATED) as out:
        for name in sorted(entries, key=lambda n: (n != "META-INF/MANIFEST.MF", n)):
            out.writestr(zipfile.ZipInfo(name, date_time=_ZIP_TIME), entries[name])


def install_into(kc_home: Path, cache: Path, keycloak_version: str) -> str:
    """Put the JAR into `kc_home/providers/` (replacing an older build); its hash, for the
    build stamp of an optimized server."""
    jar = build(kc_home, cache, keycloak_version)
    providers = kc_home / "providers"
    providers.mkdir(exist_ok=True)
    placed = providers / JAR_NAME
    if not placed.exists() or placed.read_bytes() != jar.read_bytes():
        temp = providers / f".{JAR_NAME}.partial"  # Keycloak reads only *.jar
        shutil.copyfile(jar, temp)
        temp.replace(placed)
    return hashlib.sha256(jar.read_bytes()).hexdigest()[:16]


def main(argv: list[str] | None = None) -> int:
    from devstack import keycloak as kc  # the distribution this project runs

    parser = argparse.ArgumentParser(
        prog="scripts/keycloak addon", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--keycloak-home", type=Path, help="compile against this Keycloak (default: the project's)"
    )
    parser.add_argument("--out", help="also copy the JAR here (a file or a folder)")
    args = parser.parse_args(argv)
    try:
        home = args.keycloak_home or kc.install("test")
        version = kc.KEYCLOAK_VERSION
        if args.keycloak_home and (home / "version.txt").exists():
            version = (home / "version.txt").read_text().split()[-1]
        jar = build(home, kc.cache_dir(), version)
        if args.out:
            folder = Path(args.out).is_dir() or args.out.endswith("/")
            out = Path(args.out) / JAR_NAME if folder else Path(args.out)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(jar, out)
            jar = out
    except (AddonBuildError, kc.KeycloakStartError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(jar)
    return 0


if __name__ == "__main__":
    sys.exit(main())
