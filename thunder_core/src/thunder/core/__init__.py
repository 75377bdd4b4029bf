"""The trace IR: proxies, symbols, traces, printing."""
