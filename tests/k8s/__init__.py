"""Kubernetes executor tests: an API double (real HTTP API, real pod processes) and an opt-in real-cluster suite."""
