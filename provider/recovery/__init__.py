"""Self-service recovery: a student who forgot the password or is locked out proves a
contact they verified during activation (a one-time code to it), then unlocks the
account or sets a new password. A second flow on the same engine and runner as the
activation (`provider.flows`), under /recover."""
