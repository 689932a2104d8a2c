"""Tests of the hand-back stage (fetch). A package, so its conftest does not shadow ``tests/conftest.py``."""
