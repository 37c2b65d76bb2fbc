"""Shards (schema, writer, manifest), synthetic tasks, corpus converters, Ray Data readers."""
