"""Fault, load and bad-input tests (issue 6): run alone with ``pytest -m reliability``."""
