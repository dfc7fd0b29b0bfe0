"""Sending mail: MIME building, transports, TLS, provider presets and failure classification."""
