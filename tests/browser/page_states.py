"""Every page state a student or a staff member can meet, in one list, and the walk that
checks each of them in one language.

A check first proves which page it is on, and in which language: the URL, the `lang` of
the page, its main heading and (where the heading alone would not tell two states apart)
one more text, each expected text taken from the app's own catalogues (rendered through
Flask-Babel in that language) or, for Keycloak's pages, from the realm theme's messages.
Only then is the page saved as a screenshot and run through axe-core.

axe is injected as a script, which the pages' own CSP forbids, so the contexts that walk
these states alone run with `bypass_csp`; the other browser tests keep the CSP enforced.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import requests
from flask import Flask
from flask_babel import force_locale, get_translations, gettext
from playwright.sync_api import Page, expect

from provider.i18n import HTML_LANG

AXE_JS = os.environ.get("UMPASS_AXE_JS", "")
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]

LANGUAGES = ("en", "zh_Hant", "pt")
KEYCLOAK_LOCALE = {"en": "en", "zh_Hant": "zh-TW", "pt": "pt"}
# What the phone itself says (it shapes the date picker); the page's language is chosen
# with the header's language links, as a student would.
BROWSER_LOCALE = {"en": "en-GB", "zh_Hant": "zh-MO", "pt": "pt-PT"}
THEME_MESSAGES = Path(__file__).resolve().parents[2] / "provider/themes/umpass/login/messages"

SERVICE, KEYCLOAK = "service", "keycloak"
# A plural message as (singular, plural): its count is matched as any number.
Text = str | tuple[str, str]


@dataclass(frozen=True)
class PageState:
    name: str
    url: str  # regular expression for what follows the host's base URL
    heading: str  # the h1: an English msgid, a Keycloak message key, or "" (given by the walk)
    also: Text = ""  # another text that must show, for states sharing a heading
    host: str = SERVICE  # whose page it is: the service's or Keycloak's


ID = r"/activate/identify"
THERE_IS_A_PROBLEM = "There is a problem"

FLOW = (
    PageState("start", r"/", "Activate your account"),
    PageState("identify", ID, "Confirm who you are"),
    PageState("identify-errors", ID, "Confirm who you are", THERE_IS_A_PROBLEM),
    PageState(
        "identify-failure",
        ID,
        "Confirm who you are",
        "We could not match those details. Check each one and try again.",
    ),
    PageState(
        "identify-locked",
        ID,
        "Confirm who you are",
        (
            "Too many attempts for this user ID. Try again in %(num)d minute, "
            "or ask the IT help desk.",
            "Too many attempts for this user ID. Try again in %(num)d minutes, "
            "or ask the IT help desk.",
        ),
    ),
    PageState("policies", r"/activate/policies", "Campus IT policies"),
    PageState("policies-errors", r"/activate/policies", "Campus IT policies", THERE_IS_A_PROBLEM),
    PageState(
        "contacts-choose",
        r"/activate/contacts",
        "Your phone and email",
        "If you forget your password, we can help you only through a contact confirmed "
        "with a code.",
    ),
    PageState("sign-in-elsewhere", r"/activate/", "Another sign-in started"),
    PageState(
        "contacts-code-sent",
        r"/activate/contacts",
        "Your phone and email",
        "Code sent.",
    ),
    PageState(
        "contacts-wrong-code",
        r"/activate/contacts",
        "Your phone and email",
        (
            "That code is not right. You have %(num)d try left.",
            "That code is not right. You have %(num)d tries left.",
        ),
    ),
    PageState("contacts-confirmed", r"/activate/contacts", "Your phone and email", "Confirmed"),
    PageState("password", r"/activate/password", "Choose your password", "A good password"),
    PageState("password-errors", r"/activate/password", "Choose your password", THERE_IS_A_PROBLEM),
    PageState("done", r"/activate/done", "Your account is active"),
    PageState(
        "flow-expired",
        ID,
        "Confirm who you are",
        "Your session timed out, so we started again. Nothing was changed.",
    ),
    PageState("not-found", r"/no-such-page", "Page not found"),
    PageState(
        "sign-in-link-invalid",
        r"/oidc/authorize\?.*",
        "Something went wrong",
        "This sign-in link is not valid. Go back to the page you were signing in to and try again.",
    ),
)

STUDENT = r"/helpdesk/students/\w+"
HELPDESK = (
    PageState("helpdesk-home", r"/helpdesk/", "Find a student"),
    PageState("helpdesk-student", STUDENT, "", "Timeline"),
    PageState(
        "helpdesk-confirm-code", STUDENT + "/code", "Issue a new activation code to %(user_id)s?"
    ),
    PageState("helpdesk-code-reissued", STUDENT + "/new-code", "", "New activation code"),
    PageState("helpdesk-confirm-pending", STUDENT + "/pending", "Set %(user_id)s back to pending?"),
    PageState(
        "helpdesk-confirm-pending-errors",
        STUDENT + "/pending",
        "Set %(user_id)s back to pending?",
        "Choose why the account goes back to pending.",
    ),
    PageState(
        "helpdesk-set-pending",
        STUDENT,
        "",
        "The account is pending again and every session has ended. "
        "Issue a new code when the student is ready to activate again.",
    ),
    PageState("helpdesk-not-found", STUDENT, "No such student"),
    PageState("helpdesk-funnel", r"/helpdesk/funnel", "Activation funnel"),
    PageState("helpdesk-recoveries", r"/helpdesk/recoveries", "Recoveries per week"),
    PageState("helpdesk-lockouts", r"/helpdesk/lockouts", "Locked user IDs"),
    PageState("helpdesk-undelivered", r"/helpdesk/undelivered", "Undelivered events"),
    PageState(
        "helpdesk-signed-out",
        r"/helpdesk/signed-out",
        "Signed out",
        "You are signed out of the help-desk console and of UMPASS single sign-on.",
    ),
    PageState(
        "helpdesk-no-role",
        r"/helpdesk/callback\?.*",
        "Something went wrong",
        "Your account has no help-desk role. Ask an IT admin to grant one.",
    ),
)

REALM = r"/realms/[\w-]+"
KEYCLOAK_PAGES = (
    PageState(
        "keycloak-username",
        REALM + r"/protocol/openid-connect/auth\?.*",
        "loginAccountTitle",
        "umpassActivateLink",
        KEYCLOAK,
    ),
    PageState(
        "keycloak-password",
        REALM + r"/login-actions/authenticate\?.*",
        "doLogIn",
        "umpassActivateLink",
        KEYCLOAK,
    ),
    PageState(
        "identify-from-sign-in",
        ID,
        "Confirm who you are",
        "Your account is not active yet. Activate it now and we will take you back to where "
        "you were signing in.",
    ),
    PageState("return-to-sign-in", r"/activate/cancel", "Taking you back to sign-in"),
    PageState(
        "keycloak-pending-account",
        REALM + r"/broker/umpass-activation/endpoint\?.*",
        "errorTitle",
        "umpassActivationUnavailable",
        KEYCLOAK,
    ),
    PageState(
        "keycloak-error",
        REALM + r"/protocol/openid-connect/auth\?.*",
        "errorTitle",
        "invalidParameterMessage",
        KEYCLOAK,
    ),
)

# The realm-health page (activation-admin): healthy, with drift made by hand, the latest
# stored result too old, and none stored.
REALM_HEALTH = (
    PageState(
        "realm-health", r"/helpdesk/realm-health", "Realm health", "Everything is as it should be."
    ),
    PageState("realm-health-drift", r"/helpdesk/realm-health", "Realm health", "Needs repair"),
    PageState(
        "realm-health-stale",
        r"/helpdesk/realm-health",
        "Realm health",
        "The scheduled %(command)s has stored no result for more than %(minutes)s minutes: its "
        "timer or its host may have stopped. Below is that old result, which may no longer be "
        "true.",
    ),
    PageState(
        "realm-health-never",
        r"/helpdesk/realm-health",
        "Realm health",
        "Never checked: run %(command)s",
    ),
)

PUBLISH = r"/helpdesk/policies/[\w-]+/[\d-]+/publish"
REVIEW = "New version of the campus IT policies"
POLICY_PAGES = (
    PageState("helpdesk-policies", r"/helpdesk/policies/", "Campus IT policies"),
    PageState("helpdesk-confirm-publish", PUBLISH, "Publish version %(version)s of “%(title)s”?"),
    PageState(
        "helpdesk-published",
        r"/helpdesk/policies/",
        "Campus IT policies",
        "Version %(version)s of “%(title)s” is published: students activating from now on "
        "accept it, and active students accept it the next time they sign in.",
    ),
    PageState(
        "policies-reopened",
        r"/activate/policies",
        "Campus IT policies",
        "What changed since version %(version)s, which you accepted",
    ),
    # An active student signing in after the publication (keycloak_addon's policy gate).
    PageState(
        "policy-review",
        r"/policies/review",
        REVIEW,
        "What changed since version %(version)s, which you accepted",
    ),
    PageState("policy-review-errors", r"/policies/review", REVIEW, THERE_IS_A_PROBLEM),
    PageState(
        "keycloak-policy-declined",
        REALM + r"/login-actions/authenticate\?.*",
        "errorTitle",
        "umpassPolicyDeclined",
        KEYCLOAK,
    ),
)

_GROUPS = (FLOW, HELPDESK, KEYCLOAK_PAGES, POLICY_PAGES, REALM_HEALTH)
ALL_STATES = {s.name: s for group in _GROUPS for s in group}
assert len(ALL_STATES) == sum(len(group) for group in _GROUPS), "names repeat"

# Violations in Keycloak's own markup that the `umpass` theme (messages, CSS and a footer)
# cannot reach. Each is exact: another violation, or this one gone (Keycloak fixed it,
# drop it here), fails the walk.
# keycloak.v2's template.ftl shows the typed username on the password page in
# <input id="kc-attempted-username" readonly> under <label for="username">: no element has
# that id, so the input has no label.
KEYCLOAK_UPSTREAM = {"keycloak-password": [("label", "#kc-attempted-username")]}


# -- expected texts --------------------------------------------------------------------


def service_text(app: Flask, language: str, text: Text, **params: str) -> str | re.Pattern[str]:
    """`text` as the service shows it in `language`; a plural one as a pattern."""
    with app.test_request_context(), force_locale(language):
        if isinstance(text, str):
            return gettext(text, **params)
        # The catalogue's own forms, unformatted: their count may be any number.
        forms = [get_translations().ngettext(*text, n) for n in (1, 7)]
    return re.compile("|".join(re.escape(f).replace(re.escape("%(num)d"), r"\d+") for f in forms))


def _properties(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text("ascii").splitlines() if "=" in line)
    return {key.strip(): value.encode().decode("unicode_escape") for key, value in pairs}


@cache
def _theme_messages(locale: str) -> dict[str, str]:
    return _properties(THEME_MESSAGES / f"messages_{locale.replace('-', '_')}.properties")


@cache
def _keycloak_messages(keycloak_url: str, realm: str, locale: str) -> dict[str, str]:
    """Keycloak's own texts as the realm's `umpass` login theme serves them (the theme's
    messages over those of the Keycloak themes it extends)."""
    answer = requests.get(
        f"{keycloak_url}/resources/{realm}/login/{locale}", params={"theme": "umpass"}, timeout=30
    )
    answer.raise_for_status()
    return {item["key"]: item["value"] for item in answer.json()}


def keycloak_text(keycloak_url: str, realm: str, locale: str, key: str) -> str:
    """A message as Keycloak renders it: our keys from provider/themes, the rest from
    Keycloak; through MessageFormat ('' is one quote; {0} stays for the caller)."""
    ours = _theme_messages(locale)
    value = ours[key] if key in ours else _keycloak_messages(keycloak_url, realm, locale)[key]
    return value.replace("''", "'")


# -- the walk --------------------------------------------------------------------------


@dataclass
class Where:
    service_url: str
    keycloak_url: str
    realm: str


class Walk:
    """One language's walk through one list of states, in the order of the list."""

    def __init__(
        self, app: Flask, where: Where, language: str, states: tuple[PageState, ...], shots: Path
    ) -> None:
        assert Path(AXE_JS).is_file(), "UMPASS_AXE_JS must point at axe.min.js (scripts/test)"
        self.app = app
        self.where = where
        self.language = language
        self.states = states
        self.shots = shots
        self.checked: list[str] = []
        self.violations: dict[str, list[dict]] = {}

    def check(self, page: Page, name: str, *, heading: str = "", **params: str) -> None:
        """Prove the page is state `name` in this walk's language, then run axe on it.

        `heading`: the h1 when it is not a message (a user ID); `params`: the values of
        the expected texts' placeholders."""
        state = ALL_STATES[name]
        expected = self.states[len(self.checked)].name
        assert name == expected, f"walked to {name}, the list says {expected} comes next"
        at_keycloak = state.host == KEYCLOAK
        base = self.where.keycloak_url if at_keycloak else self.where.service_url
        expect(page).to_have_url(re.compile("^" + re.escape(base) + state.url + "$"))
        lang = KEYCLOAK_LOCALE[self.language] if at_keycloak else HTML_LANG[self.language]
        expect(page.locator("html")).to_have_attribute("lang", lang)
        main = page.locator("h1")
        expect(main).to_have_count(1)
        expect(main).to_have_text(heading or self._text(state, state.heading, params))
        if state.also:
            expect(page.locator("body")).to_contain_text(self._text(state, state.also, params))
        self.checked.append(name)
        page.screenshot(path=self.shots / f"{len(self.checked):02d}-{name}.png", full_page=True)
        self.violations[name] = axe_violations(page)

    def _text(self, state: PageState, text: Text, params: dict[str, str]) -> str | re.Pattern:
        """`text` in this walk's language: never the English one, unless walking English
        (an untranslated message would pass for a page in any language)."""
        expected = self._text_in(self.language, state, text, params)
        if self.language != "en":
            english = self._text_in("en", state, text, params)
            assert expected != english, f"{text!r} is not translated to {self.language}"
        return expected

    def _text_in(
        self, language: str, state: PageState, text: Text, params: dict[str, str]
    ) -> str | re.Pattern:
        if state.host == SERVICE:
            return service_text(self.app, language, text, **params)
        assert isinstance(text, str)
        locale = KEYCLOAK_LOCALE[language]
        value = keycloak_text(self.where.keycloak_url, self.where.realm, locale, text)
        for index, param in enumerate(params.values()):
            value = value.replace(f"{{{index}}}", param)
        return value

    def assert_complete_and_clean(self) -> None:
        assert self.checked == [s.name for s in self.states], "states left unwalked"
        found = {
            name: [(v["id"], n) for v in violations for n in v["nodes"]]
            for name, violations in self.violations.items()
        }
        allowed = {name: KEYCLOAK_UPSTREAM.get(name, []) for name in found}
        assert found == allowed, {n: v for n, v in self.violations.items() if v}


def axe_violations(page: Page) -> list[dict]:
    """axe-core's violations on the page as it is now (rule, impact, first targets)."""
    page.add_script_tag(path=AXE_JS)
    result = page.evaluate(
        "async (tags) => await axe.run(document, {runOnly: {type: 'tag', values: tags}})",
        WCAG_TAGS,
    )
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [" ".join(n["target"]) for n in v["nodes"]]}
        for v in result["violations"]
    ]
