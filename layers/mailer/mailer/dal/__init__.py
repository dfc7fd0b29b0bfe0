"""Data access: the only package (with the SES transport) that talks to AWS."""
