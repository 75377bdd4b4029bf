"""Acquisition: the bytecode interpreter, provenance, and prologue generation."""
