"""Work orders synced by the business application."""
