"""The help-desk console: staff sign in through the realm (authlib OIDC client) and look
after students; admins also see the audit export and the activation funnel."""
