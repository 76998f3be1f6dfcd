package org.umpass.keycloak;

import org.keycloak.Config;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.KeycloakSessionFactory;
import org.keycloak.protocol.oidc.grants.ciba.resolvers.CIBALoginUserResolver;
import org.keycloak.protocol.oidc.grants.ciba.resolvers.CIBALoginUserResolverFactory;

/**
 * Registers {@link PendingRefusingCibaUserResolver}. Its {@link #order()} above the default
 * resolver's (0) makes Keycloak choose it without any server option, on every server that has
 * this JAR; {@code --spi-ciba-login-user-resolver--provider} can still name another.
 */
public final class PendingRefusingCibaUserResolverFactory implements CIBALoginUserResolverFactory {

    public static final String PROVIDER_ID = "umpass-pending-refusing-ciba-user-resolver";

    @Override
    public CIBALoginUserResolver create(KeycloakSession session) {
        return new PendingRefusingCibaUserResolver(session);
    }

    @Override
    public void init(Config.Scope config) {}

    @Override
    public void postInit(KeycloakSessionFactory factory) {}

    @Override
    public void close() {}

    @Override
    public String getId() {
        return PROVIDER_ID;
    }

    @Override
    public int order() {
        return 100;
    }
}
