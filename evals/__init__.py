"""Offline eval suites: measure every model, prompt and rule change before it ships (``xunjian eval``)."""
