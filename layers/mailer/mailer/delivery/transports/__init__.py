"""One module a transport, all with open, close, send and send_messages."""
