"""Governance over what the catalog holds: a run's review status from its gate outcomes and
owners' sign-offs (`review`), the aliases (`production`, `staging`) moved by promotion and
rollback (`aliases`, signed as `release`s under a policy), what a `compressgate://` URI or an
alias name means (`uri`), tags and descriptions signed by owners (`annotations`), the trust
policy anchored in the catalog (`policy`), and the audit of what the records mean (`meaning`).
"""
