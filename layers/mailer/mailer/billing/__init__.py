"""Billing: invoices synced by the business application, and the rules that remind customers of them."""
