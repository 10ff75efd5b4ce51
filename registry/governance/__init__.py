"""Governance over what the catalog holds: a run's review status from its gate outcomes and
owners' sign-offs, and the aliases (`production`, `staging`) moved by promotion and rollback.
"""
