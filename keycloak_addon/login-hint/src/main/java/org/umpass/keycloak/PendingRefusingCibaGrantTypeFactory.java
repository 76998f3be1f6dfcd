package org.umpass.keycloak;

import org.keycloak.models.KeycloakSession;
import org.keycloak.protocol.oidc.grants.OAuth2GrantType;
import org.keycloak.protocol.oidc.grants.ciba.CibaGrantTypeFactory;

/**
 * Keycloak's CIBA grant factory under its own id (the grant type URN), creating
 * {@link PendingRefusingCibaGrantType}: a provider from {@code providers/} takes the place of
 * the built-in one with the same id.
 */
public final class PendingRefusingCibaGrantTypeFactory extends CibaGrantTypeFactory {

    @Override
    public OAuth2GrantType create(KeycloakSession session) {
        return new PendingRefusingCibaGrantType();
    }
}
