"""Run the system on one machine: template resources on moto, handlers behind a local HTTP server."""
