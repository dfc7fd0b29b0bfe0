"""Shared sending layer: settings, secrets, transports, message building and the sent log."""
