"""Tooling, not runtime: code that builds things for tests and benchmarks.

Nothing the daemon, the engine or a client runs imports from here.
:mod:`.tiny_model` builds tiny random-weight SD1.5- and SDXL-architecture
models in code (tests and benchmarks never download a model).  The starter
model's training lives with the starter (``backend/starter/train.py``).
"""
