"""Gate rules, decisions, owners, approvals and waivers."""
