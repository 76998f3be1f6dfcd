package org.umpass.keycloak;

import java.util.List;
import org.keycloak.Config;
import org.keycloak.authentication.Authenticator;
import org.keycloak.authentication.AuthenticatorFactory;
import org.keycloak.models.AuthenticationExecutionModel.Requirement;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.KeycloakSessionFactory;
import org.keycloak.provider.ProviderConfigProperty;

/**
 * Registers {@link LoginHintFromUserAuthenticator} under the provider id that
 * keycloak_config/ looks for: when Keycloak offers it, apply puts the step into the browser
 * flow; without it the flow stays as it was and the typed user ID is not carried over.
 */
public final class LoginHintFromUserAuthenticatorFactory implements AuthenticatorFactory {

    public static final String PROVIDER_ID = "umpass-login-hint-from-user";

    private static final Requirement[] REQUIREMENTS = {Requirement.REQUIRED, Requirement.DISABLED};

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
    public String getReferenceCategory() {
        return null;
    }

    @Override
    public boolean isConfigurable() {
        return false;
    }

    @Override
    public Requirement[] getRequirementChoices() {
        return REQUIREMENTS;
    }

    @Override
    public boolean isUserSetupAllowed() {
        return false;
    }

    @Override
    public List<ProviderConfigProperty> getConfigProperties() {
        return List.of();
    }

    @Override
    public Authenticator create(KeycloakSession session) {
        return LoginHintFromUserAuthenticator.INSTANCE;
    }

    @Override
    public void init(Config.Scope config) {
    }

    @Override
    public void postInit(KeycloakSessionFactory factory) {
    }

    @Override
    public void close() {
    }
}
