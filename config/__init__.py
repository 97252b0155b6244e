"""Typed configuration: YAML -> pydantic -> frozen values, validated once at start."""
