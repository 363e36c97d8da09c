"""Configuration building block."""
