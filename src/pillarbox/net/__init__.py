"""The only package that touches sockets, TLS and timers: listeners and the adapters that drive
each sans-I/O protocol core with bytes from the network."""
