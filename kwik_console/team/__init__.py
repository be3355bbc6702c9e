"""The people of a hosted console: members, sign-in sessions, access tokens, the audit trail, who may do what."""
