"""Development only: a help-desk and an admin account in the realm, so the console at
/helpdesk/ can be tried at once. Prints their passwords (fresh each run).

    python -m devstack.demo_staff        (scripts/dev runs it)
"""

from __future__ import annotations

import os
import secrets
import sys

from keycloak import KeycloakAdmin, KeycloakOpenIDConnection

STAFF = {"helpdesk.demo": "activation-helpdesk", "admin.demo": "activation-admin"}


def main() -> int:
    admin = KeycloakAdmin(
        connection=KeycloakOpenIDConnection(
            server_url=os.environ["UMPASS_KEYCLOAK_URL"].rstrip("/") + "/",
            username=os.environ["KEYCLOAK_ADMIN_USER"],
            password=os.environ["KEYCLOAK_ADMIN_PASSWORD"],
            realm_name="master",
            user_realm_name="master",
            client_id="admin-cli",
        )
    )
    admin.change_current_realm(os.environ.get("UMPASS_REALM", "umpass"))
    for username, role in STAFF.items():
        password = "demo " + secrets.token_urlsafe(9)
        user_id = admin.get_user_id(username) or admin.create_user(
            {
                "username": username,
                "enabled": True,
                "email": f"{username}@staff.example.edu",
                "emailVerified": True,
                "firstName": "Demo",
                "lastName": role.split("-")[1].title(),
            }
        )
        admin.set_user_password(user_id, password, temporary=False)
        admin.assign_realm_roles(user_id, [admin.get_realm_role(role)])
        print(f"  {username:<14} {password}   ({role})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
