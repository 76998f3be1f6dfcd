package org.umpass.keycloak;

import org.keycloak.authentication.Authenticator;
import org.keycloak.models.KeycloakSession;

/**
 * Registers {@link LoginHintFromUserAuthenticator} under the provider id that
 * keycloak_config/ looks for: when Keycloak offers it, apply puts the step into the browser
 * flow; without it the flow stays as it was and the typed user ID is not carried over.
 */
public final class LoginHintFromUserAuthenticatorFactory extends UmpassAuthenticatorFactory {

    public static final String PROVIDER_ID = "umpass-login-hint-from-user";

    @Override
    public String getId() {
        return PROVIDER_ID;
    }

    @Override
    public String getDisplayType() {
        return "UMPASS: pass the username on as login_hint";
    }

    @Override
    public String getHelpText() {
        return "Sets the sign-in's login_hint to the username typed into the Username Form "
                + "(not an email: then it clears it), so that the Identity Provider Redirector "
                + "after it passes the typed user ID on.";
    }

    @Override
    public Authenticator create(KeycloakSession session) {
        return LoginHintFromUserAuthenticator.INSTANCE;
    }
}
