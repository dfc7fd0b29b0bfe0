"""Email settings: the model, the service, the account test and the deliver step."""
