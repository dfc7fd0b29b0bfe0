"""The suppression list: addresses a company's mail must not go to (a hard bounce, a complaint, or
an administrator's say)."""
