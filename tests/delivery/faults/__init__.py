"""Fault scenarios for delivery: a loopback collector scripted to fail, real children."""
