package org.umpass.keycloak;

import java.util.List;
import org.keycloak.authentication.Authenticator;
import org.keycloak.models.KeycloakSession;
import org.keycloak.provider.ProviderConfigProperty;

/**
 * Registers {@link PolicyGateAuthenticator} under the provider id keycloak_config/ looks for:
 * when Keycloak offers it, apply adds it at the end of the browser flow, configured with the
 * activation service's URLs.
 */
public final class PolicyGateAuthenticatorFactory extends UmpassAuthenticatorFactory {

    public static final String PROVIDER_ID = "umpass-policy-gate";

    @Override
    public String getId() {
        return PROVIDER_ID;
    }

    @Override
    public String getDisplayType() {
        return "UMPASS: accept new campus IT policy versions";
    }

    @Override
    public String getHelpText() {
        return "Sends an active student who has not accepted the current version of a campus IT "
                + "policy to UMPASS Activation to review it, with a ticket signed by the realm; "
                + "the sign-in goes on only once the account holds every current version.";
    }

    @Override
    public List<ProviderConfigProperty> getConfigProperties() {
        ProviderConfigProperty current = new ProviderConfigProperty();
        current.setName(PolicyGateAuthenticator.CURRENT_URL);
        current.setLabel("Current versions URL");
        current.setType(ProviderConfigProperty.STRING_TYPE);
        current.setHelpText("The service's list of current policy versions, as Keycloak reaches it.");
        ProviderConfigProperty page = new ProviderConfigProperty();
        page.setName(PolicyGateAuthenticator.PAGE_URL);
        page.setLabel("Review page URL");
        page.setType(ProviderConfigProperty.STRING_TYPE);
        page.setHelpText("The service's review page, as the student's browser reaches it.");
        ProviderConfigProperty cache = new ProviderConfigProperty();
        cache.setName(PolicyGateAuthenticator.CACHE_SECONDS);
        cache.setLabel("Seconds to keep the current versions");
        cache.setType(ProviderConfigProperty.STRING_TYPE);
        cache.setDefaultValue("30");
        cache.setHelpText("How long a newly published version may take to reach sign-ins.");
        ProviderConfigProperty refuse = new ProviderConfigProperty();
        refuse.setName(PolicyGateAuthenticator.REFUSE);
        refuse.setLabel("Refuse instead of showing the policy");
        refuse.setType(ProviderConfigProperty.BOOLEAN_TYPE);
        refuse.setHelpText("For flows that cannot show a page (the direct grant).");
        return List.of(current, page, cache, refuse);
    }

    @Override
    public Authenticator create(KeycloakSession session) {
        return PolicyGateAuthenticator.INSTANCE;
    }
}
