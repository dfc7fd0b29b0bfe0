"""The sent log: entries and the queries support runs."""
