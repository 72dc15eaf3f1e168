"""Faust agents: chunks -> Postgres (+ outcomes topic), outcomes -> ClickHouse."""
