"""The outside of xunjian: the command line (``app.cli``); later the HTTP API and web UI."""
