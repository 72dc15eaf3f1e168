"""Models the roles agree on: HTTP bodies, Kafka messages and entity rows."""
