"""Trace-to-trace passes."""
