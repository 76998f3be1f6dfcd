"""The service's own database: activation codes, proofing hashes, flows, counters, audit.

Keycloak holds the accounts; this holds only what the activation needs, and never a
secret or a proofing value in clear (see `provider.keyed_hash`).
"""
