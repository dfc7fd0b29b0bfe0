"""Automated email: settings, the planner, status changes, composition and the worker."""
