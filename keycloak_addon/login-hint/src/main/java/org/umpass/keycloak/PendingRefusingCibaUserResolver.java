package org.umpass.keycloak;

import org.keycloak.models.KeycloakSession;
import org.keycloak.models.UserModel;
import org.keycloak.protocol.oidc.grants.ciba.resolvers.CIBALoginUserResolver;
import org.keycloak.protocol.oidc.grants.ciba.resolvers.DefaultCIBALoginUserResolver;

/**
 * Keycloak's CIBA grant runs no authentication flow: it finds the user named by the client's
 * {@code login_hint}, asks the user's authentication device, and on the device's approval issues
 * tokens, checking only that the account is enabled and has no required actions. A pending
 * account (attribute {@code activation_state=pending}) is enabled, so the flows' pending check
 * never sees a CIBA request.
 *
 * <p>This resolver finds users exactly as Keycloak's default one does (username or email) and
 * finds no pending account: Keycloak then refuses the backchannel authentication request
 * ({@code invalid_request}, {@code invalid_user}) before any device is asked.
 */
public final class PendingRefusingCibaUserResolver implements CIBALoginUserResolver {

    static final String STATE = "activation_state";
    static final String PENDING = "pending";

    private final DefaultCIBALoginUserResolver standard;

    PendingRefusingCibaUserResolver(KeycloakSession session) {
        this.standard = new DefaultCIBALoginUserResolver(session);
    }

    static boolean isPending(UserModel user) {
        return user != null && user.getAttributeStream(STATE).anyMatch(PENDING::equals);
    }

    private static UserModel unlessPending(UserModel user) {
        return isPending(user) ? null : user;
    }

    @Override
    public UserModel getUserFromLoginHint(String loginHint) {
        return unlessPending(standard.getUserFromLoginHint(loginHint));
    }

    @Override
    public UserModel getUserFromLoginHintToken(String loginHintToken) {
        return unlessPending(standard.getUserFromLoginHintToken(loginHintToken));
    }

    @Override
    public UserModel getUserFromIdTokenHint(String idToken) {
        return unlessPending(standard.getUserFromIdTokenHint(idToken));
    }

    @Override
    public String getInfoUsedByAuthentication(UserModel user) {
        return standard.getInfoUsedByAuthentication(user);
    }

    @Override
    public UserModel getUserFromInfoUsedByAuthentication(String info) {
        return unlessPending(standard.getUserFromInfoUsedByAuthentication(info));
    }

    @Override
    public void close() {
        standard.close();
    }
}
