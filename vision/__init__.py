"""Footage → geolocated observations: decoding, telemetry, detection, tracking (issue: vision)."""
