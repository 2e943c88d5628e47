"""Persistence: the schema, the async engine and the migrations that build it."""
