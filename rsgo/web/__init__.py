"""Blueprints: thin views that load, call the domain and render."""
