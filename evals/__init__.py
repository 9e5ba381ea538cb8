"""Offline eval suites for models, prompts and rules (issue: eval suites)."""
