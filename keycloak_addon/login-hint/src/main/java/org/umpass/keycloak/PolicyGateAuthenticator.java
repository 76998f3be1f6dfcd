package org.umpass.keycloak;

import jakarta.ws.rs.core.MediaType;
import jakarta.ws.rs.core.Response;
import jakarta.ws.rs.core.UriBuilder;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import java.util.regex.Pattern;
import java.util.logging.Logger;
import java.util.stream.Collectors;
import org.keycloak.authentication.AuthenticationFlowContext;
import org.keycloak.authentication.AuthenticationFlowError;
import org.keycloak.authentication.Authenticator;
import org.keycloak.crypto.SignatureProvider;
import org.keycloak.jose.jws.JWSBuilder;
import org.keycloak.models.AuthenticatorConfigModel;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.RealmModel;
import org.keycloak.models.UserModel;
import org.keycloak.representations.JsonWebToken;
import org.keycloak.representations.idm.OAuth2ErrorRepresentation;
import org.keycloak.services.Urls;
import org.keycloak.util.JsonSerialization;

/**
 * Stops an active student whose account lacks the current version of a campus IT policy,
 * after they have signed in (password, passkey or an SSO cookie) and before the application:
 * the browser goes to UMPASS Activation's review page, and comes back here.
 *
 * <p>Why a step of our own: the activation service cannot learn from Keycloak's built-in
 * steps <em>who</em> signed in (the identity-provider redirect forwards only a
 * {@code login_hint}, which anyone can set). This step hands the service a ticket that only
 * Keycloak can make: a JWT signed with the realm's own key (so the service checks it against
 * the realm's published keys, with no shared secret), for this account, typed
 * {@value #TICKET_TYPE} in its header and claims (so no API takes it for an access token),
 * valid ten minutes, naming the URL that resumes this very sign-in. It carries no name.
 *
 * <p>Where nothing can be shown (configured {@code refuse}: the direct grant), a due student
 * is refused with {@code invalid_grant} and a sentence saying to sign in with a browser.
 *
 * <p>Which versions are current is the service's (it publishes them): read from
 * {@code current_url}, kept {@code cache_seconds} (30 unless configured). When the service cannot be read, the
 * last answer read stands; with none, the sign-in goes on (re-acceptance waits for the next
 * sign-in rather than locking every student out of every application).
 *
 * <p>When the browser returns, nothing it brings is believed: the account is read again, and
 * the sign-in goes on only if it now holds every current version. Otherwise (the student
 * declined) the sign-in ends on a page that says so.
 */
public final class PolicyGateAuthenticator implements Authenticator {

    static final PolicyGateAuthenticator INSTANCE = new PolicyGateAuthenticator();

    static final String TICKET_TYPE = "umpass-policy-gate";
    static final String CURRENT_URL = "current_url";
    static final String PAGE_URL = "page_url";
    static final String CACHE_SECONDS = "cache_seconds";
    // "true" where nothing can be shown (the direct grant): a due student is refused.
    static final String REFUSE = "refuse";
    // The JWS header's typ (RFC 8725, 3.11): no library takes it for an access token.
    static final String HEADER_TYPE = "umpass-policy-gate+jwt";
    private static final Set<String> ASYMMETRIC =
            Set.of("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512");
    static final String DECLINED_MESSAGE = "umpassPolicyDeclined";

    // User-profile attributes shared with provider/keycloak.py.
    private static final String ACCEPTED = "accepted_policies";
    private static final String STATE = "activation_state";
    private static final String ACTIVE = "active";

    private static final int TICKET_SECONDS = 600;
    private static final int DEFAULT_CACHE_SECONDS = 30;
    private static final Pattern KEY = Pattern.compile("[a-z0-9-]+@\\d{4}-\\d{2}");
    private static final Logger LOG = Logger.getLogger(PolicyGateAuthenticator.class.getName());
    private static final HttpClient HTTP =
            HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(2)).build();
    private static final Map<String, Current> CACHE = new ConcurrentHashMap<>();

    /** What {@code current_url} answered last ({@code keys} null: it never answered). */
    private record Current(List<String> keys, long readAt) {}


    @Override
    public void authenticate(AuthenticationFlowContext context) {
        UserModel user = context.getUser();
        Map<String, String> config = config(context);
        List<String> due = config == null ? List.of() : due(config, user);
        if (due.isEmpty()) {
            context.success();
            return;
        }
        if ("true".equals(config.get(REFUSE))) {
            OAuth2ErrorRepresentation error =
                    new OAuth2ErrorRepresentation(
                            "invalid_grant",
                            "A new version of a campus IT policy must be accepted: sign in "
                                    + "with a browser to read and accept it");
            context.failure(
                    AuthenticationFlowError.ACCESS_DENIED,
                    Response.status(Response.Status.BAD_REQUEST)
                            .entity(error)
                            .type(MediaType.APPLICATION_JSON_TYPE)
                            .build());
            return;
        }
        RealmModel realm = context.getRealm();
        JsonWebToken ticket = new JsonWebToken();
        ticket.id(UUID.randomUUID().toString());
        ticket.issuer(Urls.realmIssuer(context.getUriInfo().getBaseUri(), realm.getName()));
        ticket.audience(TICKET_TYPE);
        ticket.type(TICKET_TYPE);
        ticket.subject(user.getId());
        // Ten minutes, or less when the realm gives a sign-in less time than that.
        ticket.issuedNowWithTTL(Math.min(TICKET_SECONDS, realm.getAccessCodeLifespanLogin()));
        ticket.setOtherClaims("due", due);
        ticket.setOtherClaims(
                "callback", context.getActionUrl(context.generateAccessCode()).toString());
        ticket.setOtherClaims(
                "locale", context.getSession().getContext().resolveLocale(user).toLanguageTag());
        String algorithm = realm.getDefaultSignatureAlgorithm();
        if (algorithm == null || !ASYMMETRIC.contains(algorithm)) {
            algorithm = "RS256"; // the service takes only what the realm's JWKS can verify
        }
        String signed =
                new JWSBuilder()
                        .type(HEADER_TYPE)
                        .jsonContent(ticket)
                        .sign(context.getSession()
                                .getProvider(SignatureProvider.class, algorithm)
                                .signer());
        URI page = UriBuilder.fromUri(config.get(PAGE_URL)).queryParam("ticket", signed).build();
        context.challenge(Response.seeOther(page).build());
    }

    @Override
    public void action(AuthenticationFlowContext context) {
        // Back from the service: the account as it is now decides, not the request.
        Map<String, String> config = config(context);
        if (config == null || due(config, context.getUser()).isEmpty()) {
            context.success();
            return;
        }
        // A challenge, not a failure: a failure would count as a wrong password towards the
        // realm's brute-force lock. The sign-in goes no further either way.
        context.challenge(
                context.form().setError(DECLINED_MESSAGE).createErrorPage(Response.Status.FORBIDDEN));
    }

    /** The current versions this active student has not accepted; none for anyone else. */
    static List<String> due(Map<String, String> config, UserModel user) {
        if (!ACTIVE.equals(user.getFirstAttribute(STATE))) {
            return List.of(); // pending accounts never get here; staff have no state
        }
        List<String> current = current(config.get(CURRENT_URL), cacheSeconds(config));
        // Each record is "id@version:time"; the time has colons of its own.
        Set<String> accepted =
                user.getAttributeStream(ACCEPTED)
                        .map(record -> record.split(":", 2)[0])
                        .collect(Collectors.toSet());
        return current.stream().filter(key -> !accepted.contains(key)).toList();
    }

    private static int cacheSeconds(Map<String, String> config) {
        try {
            return Math.max(0, Integer.parseInt(config.getOrDefault(CACHE_SECONDS, "").trim()));
        } catch (NumberFormatException e) {
            return DEFAULT_CACHE_SECONDS;
        }
    }

    private static List<String> current(String url, int cacheSeconds) {
        long now = System.currentTimeMillis();
        Current known = CACHE.get(url);
        if (known != null && now - known.readAt() < cacheSeconds * 1000L) {
            return known.keys() == null ? List.of() : known.keys();
        }
        List<String> keys = known == null ? null : known.keys();
        try {
            HttpRequest request =
                    HttpRequest.newBuilder(URI.create(url))
                            .timeout(Duration.ofSeconds(2))
                            .header("Accept", "application/json")
                            .GET()
                            .build();
            HttpResponse<String> response = HTTP.send(request, HttpResponse.BodyHandlers.ofString());
            if (response.statusCode() != 200) {
                throw new IllegalStateException("HTTP " + response.statusCode());
            }
            Object listed = JsonSerialization.readValue(response.body(), Map.class).get("current");
            if (!(listed instanceof List<?> values)) {
                throw new IllegalStateException("no \"current\" list");
            }
            List<String> read = new ArrayList<>();
            for (Object value : values) {
                if (!(value instanceof String key) || !KEY.matcher(key).matches()) {
                    throw new IllegalStateException("not a policy version: " + value);
                }
                read.add(key);
            }
            keys = List.copyOf(read);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            LOG.warning("UMPASS policy gate: reading " + url + " was interrupted");
        } catch (Exception e) {
            LOG.warning(
                    "UMPASS policy gate: cannot read the current policy versions from " + url
                            + " (" + e + "); "
                            + (keys == null
                                    ? "sign-ins go on without re-acceptance until it answers"
                                    : "the versions it answered last stand"));
        }
        // Kept even after a failure: a service that is down costs one timeout per interval,
        // not one per sign-in.
        CACHE.put(url, new Current(keys, now));
        return keys == null ? List.of() : keys;
    }

    private static Map<String, String> config(AuthenticationFlowContext context) {
        AuthenticatorConfigModel model = context.getAuthenticatorConfig();
        Map<String, String> config = model == null ? null : model.getConfig();
        if (config == null || blank(config.get(CURRENT_URL)) || blank(config.get(PAGE_URL))) {
            LOG.warning("UMPASS policy gate: not configured (current_url, page_url); it lets everyone on");
            return null;
        }
        return config;
    }

    private static boolean blank(String value) {
        return value == null || value.isBlank();
    }

    @Override
    public boolean requiresUser() {
        return true;
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
