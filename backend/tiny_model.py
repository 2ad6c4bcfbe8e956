"""Moved to :mod:`impasto.backend.tooling.tiny_model` (tooling is kept apart from the runtime).

This alias keeps ``from impasto.backend.tiny_model import build_tiny_model``
working for scripts and tests written before the move.
"""
from impasto.backend.tooling.tiny_model import *  # noqa: F401,F403
from impasto.backend.tooling.tiny_model import WORDS, build_tiny_model, build_tiny_sdxl, write_tokenizer  # noqa: F401
