"""Add the extension to a Keycloak realm, or take it out, by plan first.

    python -m keycloak_config.apply [--plan | --check | --uninstall] [--yes]
                                    [--theme] [--with-demo] [--fast-hash]
                                    [--remove-activation-data] [--ldap-federation]

Reads the JSON files beside this module, fills in `{{NAME}}` placeholders from the
environment and merges them into the realm the university already runs: what the
extension needs is added, settings are raised to the extension's floors (never lowered),
the realm's own flows are kept inside the extension's, and everything else is left
alone. Every run first works out a plan, grouped as add / raise / change / remove /
leave alone. `--plan` prints it and writes nothing; `--check` prints only the writes and
exits 1 when there are any (drift); a plain run prints the plan and, on a terminal, asks
before writing (`--yes` skips the question; off a terminal `--yes` is required). What the
extension created or changed is recorded in the realm, so `--uninstall` (with its own
plan) removes what it created and restores what it changed.

`--theme` makes the realm's login theme `umpass`; `--with-demo` adds the demo downstream
client (development and tests only); `--fast-hash` adds a cheap password hash to the
password policy (test realms only); `--remove-activation-data` (with `--uninstall`) also
removes the activation attributes from every account.

This uses a privileged credential (a master-realm admin); the running service never
does. Environment:

    UMPASS_KEYCLOAK_URL          Keycloak base URL (default http://127.0.0.1:18080)
    KEYCLOAK_ADMIN_USER          master-realm admin user name
    KEYCLOAK_ADMIN_PASSWORD      its password
    UMPASS_REALM                 realm name (default umpass)
    UMPASS_KC_CLIENT_SECRET      secret to give the service's client
    UMPASS_KC_PROVISIONER_SECRET secret to give the provisioning client
    UMPASS_DEMO_BASE_URL         where the demo downstream app lives (default: UMPASS_BASE_URL)
    UMPASS_BASE_URL              where students reach the service (its OIDC issuer is <this>/oidc)
    UMPASS_BACKCHANNEL_URL       where Keycloak reaches the service (default: UMPASS_BASE_URL)
    UMPASS_BROKER_CLIENT_ID      the realm's client id at the service (default keycloak-broker)
    UMPASS_BROKER_CLIENT_SECRET  its secret (the service holds the same value)
    UMPASS_HELPDESK_CLIENT_SECRET  secret of the help-desk console's client
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from keycloak import KeycloakAdmin
from keycloak.exceptions import (
    KeycloakAuthenticationError,
    KeycloakConnectionError,
    KeycloakError,
    KeycloakGetError,
    KeycloakPostError,
)

from keycloak_config.applier import RealmApplier
from keycloak_config.flows import FlowError
from keycloak_config.options import ApplyError, ApplyOptions
from keycloak_config.plan import Plan
from keycloak_config.uninstall import RealmUninstaller

__all__ = ["ApplyError", "ApplyOptions", "apply_realm", "main", "uninstall_realm"]


def apply_realm(
    options: ApplyOptions, *, dry_run: bool = False, admin: KeycloakAdmin | None = None
) -> Plan:
    """Apply (or with dry_run, only plan) the extension; errors become `ApplyError`.
    `admin`: read through this connection instead (a plan by a read-only account)."""
    return _translated(options, lambda: RealmApplier(options, dry_run=dry_run, admin=admin).apply())


def uninstall_realm(
    options: ApplyOptions, *, dry_run: bool = False, remove_data: bool = False
) -> Plan:
    """Take the extension out of the realm (or with dry_run, only plan it)."""
    return _translated(
        options,
        lambda: RealmUninstaller(options, dry_run=dry_run, remove_data=remove_data).uninstall(),
    )


def _translated(options: ApplyOptions, run: Callable[[], Plan]) -> Plan:
    try:
        return run()
    except KeycloakConnectionError as exc:
        raise ApplyError(
            f"cannot reach Keycloak at {options.url}: is it running? (scripts/keycloak start)"
        ) from exc
    except (KeycloakAuthenticationError, KeycloakGetError, KeycloakPostError) as exc:
        # A refused password grant is HTTP 400 invalid_grant, not 401.
        if not isinstance(exc, KeycloakAuthenticationError) and b"invalid_grant" not in (
            exc.response_body or b""
        ):
            raise ApplyError(_refusal(exc)) from exc
        raise ApplyError(
            f"Keycloak at {options.url} refused the admin credential: "
            "check KEYCLOAK_ADMIN_USER and KEYCLOAK_ADMIN_PASSWORD"
        ) from exc
    except KeycloakError as exc:
        raise ApplyError(_refusal(exc)) from exc
    except FlowError as exc:
        raise ApplyError(str(exc)) from exc


def _refusal(exc: KeycloakError) -> str:
    body = (exc.response_body or b"").decode("utf-8", "replace")[:300]
    return f"Keycloak refused a change (HTTP {exc.response_code}): {body}"


def _apply_ldap_federation(options: ApplyOptions) -> list[str]:
    """The realm profile for universities whose accounts live in a directory."""
    from keycloak_config.ldap_federation import LdapFederationSettings, apply_ldap_federation

    missing = [
        n
        for n in ("UMPASS_LDAP_URL", "UMPASS_LDAP_BIND_DN", "UMPASS_LDAP_BIND_PASSWORD")
        if not os.environ.get(n)
    ]
    users_dn = os.environ.get("UMPASS_LDAP_USERS_DN") or os.environ.get("UMPASS_LDAP_BASE_DN")
    if missing or not users_dn:
        raise ApplyError(
            f"{', '.join(missing) or 'UMPASS_LDAP_USERS_DN'} not set: --ldap-federation needs "
            "the directory's URL, bind DN and password, and where the accounts live"
        )
    settings = LdapFederationSettings(
        connection_url=os.environ["UMPASS_LDAP_URL"],
        bind_dn=os.environ["UMPASS_LDAP_BIND_DN"],
        bind_credential=os.environ["UMPASS_LDAP_BIND_PASSWORD"],
        users_dn=users_dn,
    )
    return apply_ldap_federation(options.admin(), options.realm, settings)


def _confirmed(question: str, *, yes: bool) -> bool:
    if yes:
        return True
    if not sys.stdin.isatty():
        raise ApplyError(
            "not a terminal, so the plan cannot be confirmed: "
            "read it with --plan, then run with --yes"
        )
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--plan", action="store_true", help="print what would change, write nothing")
    mode.add_argument("--check", action="store_true", help="report drift (exit 1), write nothing")
    parser.add_argument(
        "--uninstall", action="store_true", help="remove what the extension added (--plan: show)"
    )
    parser.add_argument("--yes", action="store_true", help="apply without asking")
    parser.add_argument("--theme", action="store_true", help="make the login theme umpass")
    parser.add_argument("--with-demo", action="store_true", help="add the demo client (dev only)")
    parser.add_argument("--fast-hash", action="store_true", help="cheap hashing, tests only")
    parser.add_argument(
        "--remove-activation-data",
        action="store_true",
        help="with --uninstall: also remove the activation attributes from every account",
    )
    parser.add_argument(
        "--ldap-federation",
        action="store_true",
        help="also federate the realm with the LDAP directory in UMPASS_LDAP_* (writable)",
    )
    args = parser.parse_args(argv)
    try:
        options = ApplyOptions.from_env(
            os.environ, fast_hash=args.fast_hash, theme=args.theme, with_demo=args.with_demo
        )
        if args.uninstall and args.check:
            raise ApplyError(
                "--check judges an installed extension; --uninstall --plan shows an uninstall"
            )
        if args.uninstall and args.plan:
            plan = uninstall_realm(options, dry_run=True, remove_data=args.remove_activation_data)
            print(plan.render("Uninstall plan"))
            return 0
        if args.uninstall:
            return _run(
                "Uninstall plan",
                lambda dry: uninstall_realm(
                    options, dry_run=dry, remove_data=args.remove_activation_data
                ),
                yes=args.yes,
            )
        if args.plan or args.check:
            plan = apply_realm(options, dry_run=True)
            if args.check:
                for line in plan.lines():
                    print(f"  - {line}")
                print(f"realm {options.realm}: {'drifted' if plan.writes() else 'up to date'}")
                return 1 if plan.writes() else 0
            print(plan.render("Plan"))
            return 0
        status = _run("Plan", lambda dry: apply_realm(options, dry_run=dry), yes=args.yes)
        if status == 0 and args.ldap_federation:
            for change in _apply_ldap_federation(options):
                print(f"  - {change}")
        return status
    except ApplyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(title: str, run: Callable[[bool], Plan], *, yes: bool) -> int:
    plan = run(True)
    print(plan.render(title))
    if not plan.writes():
        return 0
    count = len(plan.writes())
    question = f"Apply the plan above to realm {plan.realm} ({count} change{'s' * (count != 1)})?"
    if not _confirmed(question, yes=yes):
        print("nothing changed")
        return 1
    if run(True).lines() != plan.lines():
        raise ApplyError(
            "the realm changed since the plan was made: nothing was written; read the new plan"
        )
    done = run(False)
    print(f"realm {done.realm}: done, {len(done.writes())} changes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
