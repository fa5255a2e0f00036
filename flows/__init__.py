"""Flows: models, validation, the engine, commands, API and admin."""
