"""Impasto."""
