"""Sinks know their wire formats and nothing of smelting: they drain the outbox and confirm."""
