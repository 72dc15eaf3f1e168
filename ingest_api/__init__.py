"""The HTTP edge: validates bulk actions and turns them into Kafka chunks."""
