package org.umpass.keycloak;

import jakarta.ws.rs.core.Response;
import org.keycloak.OAuthErrorException;
import org.keycloak.events.Details;
import org.keycloak.events.Errors;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.UserModel;
import org.keycloak.protocol.oidc.grants.ciba.CibaGrantType;
import org.keycloak.protocol.oidc.grants.ciba.channel.CIBAAuthenticationRequest;
import org.keycloak.services.CorsErrorResponseException;

/**
 * Keycloak's CIBA token request, refused for an account that is pending when the client polls.
 * {@link PendingRefusingCibaUserResolver} refuses a request naming a pending account; this closes
 * the rest: an account set back to pending after its request was made, before the device's
 * approval turned into tokens. Everything else is Keycloak's own grant.
 */
public final class PendingRefusingCibaGrantType extends CibaGrantType {

    @Override
    public Response process(Context context) {
        String authReqId = context.getFormParams().getFirst(AUTH_REQ_ID);
        if (authReqId != null) {
            KeycloakSession session = context.getSession();
            UserModel user = null;
            try {
                CIBAAuthenticationRequest request =
                        CIBAAuthenticationRequest.deserialize(session, authReqId);
                user = session.users().getUserById(context.getRealm(), request.getSubject());
            } catch (RuntimeException unreadable) {
                // Keycloak's grant below answers an unreadable auth_req_id itself.
            }
            if (PendingRefusingCibaUserResolver.isPending(user)) {
                context.getEvent().detail(Details.REASON, "activation_state is pending");
                context.getEvent().error(Errors.NOT_ALLOWED);
                throw new CorsErrorResponseException(context.getCors(),
                        OAuthErrorException.INVALID_GRANT, "Account is not activated",
                        Response.Status.BAD_REQUEST);
            }
        }
        return super.process(context);
    }
}
