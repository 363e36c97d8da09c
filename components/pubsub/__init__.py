"""Pub/sub building block."""
