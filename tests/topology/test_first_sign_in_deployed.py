"""First SSO sign-in in real Chromium through the deployed topology: the browser trusts
only the stack's throwaway CA (an NSS database of its own, no certificate errors ignored),
reaches the demo app, Keycloak and the service only through nginx over HTTPS, and a
Keycloak node dies half-way through the sign-in.

Screenshots go to artifacts/browser/topology/.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator

import pytest
from devstack.stack import Stack
from devstack.student_walk import CodeReader, Student
from playwright.sync_api import Browser, Playwright, expect

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.browser.sso import enter_username
from tests.browser.test_activation_in_chromium import prove_contacts
from tests.support.date_boxes import type_date_of_birth
from tests.support.shots import Shots
from tests.topology.conftest import Accounts

PASSWORD = "quiet harbour lantern 2031"

pytestmark = pytest.mark.topology


@pytest.fixture(scope="module")
def trusting_browser(
    playwright: Playwright, stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Browser]:
    """Chromium whose only extra trusted root is the stack's CA (NSS db under its HOME)."""
    home = tmp_path_factory.mktemp("chromium-home")
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    certutil = ["/usr/bin/certutil", "-d", f"sql:{nssdb}"]
    subprocess.run([*certutil, "-N", "--empty-password"], check=True)
    trust_ca = ["-A", "-t", "C,,", "-n", "umpass-stack-ca", "-i", str(stack.ca_file)]
    subprocess.run([*certutil, *trust_ca], check=True)
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM, args=CHROMIUM_ARGS, env={"HOME": str(home)}
    )
    yield browser
    browser.close()


def test_first_sign_in_completes_while_a_keycloak_node_dies(
    stack: Stack,
    trusting_browser: Browser,
    enrol: Callable[[], Student],
    codes: CodeReader,
    accounts: Accounts,
    shots_in: Callable[[str], Shots],
) -> None:
    who = enrol()
    shots = shots_in("topology")
    context = trusting_browser.new_context(viewport={"width": 360, "height": 740})
    page = context.new_page()
    page.goto(f"{stack.demo_url}/")
    page.get_by_role("link", name="Sign in with UMPASS").click()
    page.wait_for_selector("#username")
    assert page.url.startswith(stack.keycloak_url + "/")
    shots.take(page, "keycloak-username-over-https")

    # Half-way: the Keycloak sign-in session was made on one node; take a node away. The
    # cluster's distributed caches carry it to the other.
    stack.keycloak_nodes[0].kill()
    try:
        enter_username(page, who.user_id)
        # The surviving node answers once the cluster has given up on the dead one: at once
        # when its socket closes, but up to JGroups' heartbeat timeout (about 40 s) on a
        # loaded machine, more than Playwright's default 30 s (a red CI run showed it).
        page.wait_for_url(f"{stack.service_url}/activate/identify", timeout=120_000)
        shots.take(page, "identify-over-https")
        # The node that answered has keycloak_addon/'s JAR: the ID typed there is filled in.
        expect(page.get_by_label("User ID")).to_have_value(who.user_id)
        page.get_by_label("Activation code").fill(who.code)
        type_date_of_birth(page, who.date_of_birth)
        page.get_by_label("Last 4 characters of your ID or passport number").fill(who.id_last4)
        page.get_by_role("button", name="Continue").click()
        expect(page.locator(".caption")).to_have_text("Step 2 of 5")
        for box in page.get_by_role("checkbox").all():
            box.check()
        page.get_by_role("button", name="Accept and continue").click()
        prove_contacts(page, codes, who.email, who.phone, None)
        page.get_by_label("New password").fill(PASSWORD)
        page.get_by_label("Type it again").fill(PASSWORD)
        page.get_by_role("button", name="Activate my account").click()

        # Back at the demo app through nginx, signed in as this student.
        page.wait_for_url(f"{stack.demo_url}/**")
        expect(page.locator("#who")).to_contain_text(who.user_id)
        expect(page.locator("#state")).to_have_text("active")
        shots.take(page, "demo-signed-in-over-https")
        accounts.assert_activated(who)
    finally:
        context.close()
        stack.keycloak_nodes[0].start()
