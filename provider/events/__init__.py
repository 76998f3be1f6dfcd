"""Events for downstream systems (the LMS, mail, the library): a transactional outbox.

A state change and its event are written in one database transaction (`outbox.record`),
so a crash keeps both or neither; `umpass deliver` (deliver.py), a process of its own,
sends them to the configured endpoints (endpoints.py) signed the Standard Webhooks way
(signing.py), retried with backoff, in order per student and endpoint (queue.py). A slow
endpoint therefore never slows a student: the web service only ever INSERTs one row.
"""

from __future__ import annotations

# The event types. A payload holds the student's user ID, the time and what changed;
# never a password, a code or a proofing value.
ACTIVATED = "student.activated"
PASSWORD_RESET = "student.password_reset"  # noqa: S105 (an event name)
UNLOCKED = "student.unlocked"
CODE_REISSUED = "student.activation_code_reissued"
BACK_TO_PENDING = "student.back_to_pending"  # by the help desk: sessions ended too
# One per contact the contacts step proved and wrote to Keycloak (while the account is
# pending, before `student.activated`, which names the verified ones again). It names the
# channel, never the address or the number: downstream reads those from Keycloak. No
# other path changes a contact yet; one that does records this type too.
CONTACT_VERIFIED = "student.contact_verified"

TYPES = (ACTIVATED, PASSWORD_RESET, UNLOCKED, CODE_REISSUED, BACK_TO_PENDING, CONTACT_VERIFIED)
