package org.umpass.keycloak;

import org.keycloak.authentication.AuthenticationFlowContext;
import org.keycloak.authentication.Authenticator;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.RealmModel;
import org.keycloak.models.UserModel;
import org.keycloak.protocol.oidc.OIDCLoginProtocol;

/**
 * Passes the account the Username Form identified on to the identity provider as its
 * {@code login_hint}.
 *
 * <p>Why: Keycloak's Identity Provider Redirector forwards only the sign-in request's
 * {@code login_hint} client note, which only a client's own authorization request sets; the
 * user ID a student types into the Username Form is not passed on. Placed just before the
 * redirector in the pending-account branch of the UMPASS browser flow, this step lets the
 * activation service pre-fill its user ID. A pre-fill only: the service still asks for the
 * activation code, date of birth and ID digits.
 *
 * <p>The note is set to this account's username even when the client sent a hint: the
 * student may have typed another ID over the one the client suggested, or restarted the
 * sign-in as someone else, and activation is for the account identified now.
 *
 * <p>It never fails or challenges: it sets the note and succeeds.
 */
public final class LoginHintFromUserAuthenticator implements Authenticator {

    static final LoginHintFromUserAuthenticator INSTANCE = new LoginHintFromUserAuthenticator();

    @Override
    public void authenticate(AuthenticationFlowContext context) {
        UserModel user = context.getUser();
        if (user != null && user.getUsername() != null) {
            context.getAuthenticationSession()
                    .setClientNote(OIDCLoginProtocol.LOGIN_HINT_PARAM, user.getUsername());
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
