package org.umpass.keycloak;

import org.keycloak.authentication.AuthenticationFlowContext;
import org.keycloak.authentication.Authenticator;
import org.keycloak.authentication.authenticators.browser.AbstractUsernameFormAuthenticator;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.RealmModel;
import org.keycloak.models.UserModel;
import org.keycloak.protocol.oidc.OIDCLoginProtocol;
import org.keycloak.sessions.AuthenticationSessionModel;

/**
 * Passes the user ID the student typed into the Username Form on to the identity provider as
 * its {@code login_hint}.
 *
 * <p>Why: Keycloak's Identity Provider Redirector forwards only the sign-in request's
 * {@code login_hint} client note, which only a client's own authorization request sets; the
 * user ID a student types into the Username Form is not passed on. Placed just before the
 * redirector in the pending-account branch of the UMPASS browser flow, this step lets the
 * activation service pre-fill its user ID. A pre-fill only: the service still asks for the
 * activation code, date of birth and ID digits.
 *
 * <p>Only what was typed is passed on, and only when it is the account's username (any case):
 * Keycloak also finds an account by its email, and passing that account's username on would
 * tell whoever typed the email which user ID it belongs to. Otherwise the note is removed: a
 * hint the client sent no longer names what the student typed (they typed over it, or
 * restarted the sign-in as someone else).
 *
 * <p>It never fails or challenges: it sets (or clears) the note and succeeds.
 */
public final class LoginHintFromUserAuthenticator implements Authenticator {

    static final LoginHintFromUserAuthenticator INSTANCE = new LoginHintFromUserAuthenticator();

    @Override
    public void authenticate(AuthenticationFlowContext context) {
        AuthenticationSessionModel session = context.getAuthenticationSession();
        UserModel user = context.getUser();
        // What the Username Form received, trimmed (it keeps it for its own "restart" link).
        String typed = session.getAuthNote(AbstractUsernameFormAuthenticator.ATTEMPTED_USERNAME);
        if (user != null && typed != null && typed.equalsIgnoreCase(user.getUsername())) {
            session.setClientNote(OIDCLoginProtocol.LOGIN_HINT_PARAM, user.getUsername());
        } else {
            session.removeClientNote(OIDCLoginProtocol.LOGIN_HINT_PARAM);
        }
        context.success();
    }

    @Override
    public void action(AuthenticationFlowContext context) {
        context.success(); // shows no form, so nothing is ever posted to it
    }

    @Override
    public boolean requiresUser() {
        return true; // runs only after the Username Form has identified an account
    }

    @Override
    public boolean configuredFor(KeycloakSession session, RealmModel realm, UserModel user) {
        return true;
    }

    @Override
    public void setRequiredActions(KeycloakSession session, RealmModel realm, UserModel user) {
    }

    @Override
    public void close() {
    }
}
