"""The service as the realm's activation identity provider (OpenID Connect, authlib).

Keycloak's browser flow sends a pending student here through its Identity Provider
Redirector; this provider answers with an identity only at the end of an activation
completed in that same browser, for exactly the account just activated.
"""
