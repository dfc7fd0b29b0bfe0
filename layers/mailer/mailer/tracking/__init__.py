"""After the send: delivery events from SES and bounce reports, opens, and what they change."""
