"""Bulkflow's shared infrastructure: the floor every other package builds on.

Settings, names and limits, SQL, and the clients of Postgres, Kafka, Redis and
ClickHouse, with the one retry policy. It imports no other bulkflow package:
``schemas`` (the models both sides agree on) builds on it, the two roles
``ingest_api`` (HTTP in) and ``stream_agents`` (Kafka to Postgres and
ClickHouse) build on both, and ``ops`` (the command line, the server, local
services, the benchmark) is the one package that composes the roles.
"""
