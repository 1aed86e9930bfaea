"""DNS for mail: the resolver the queue and policy use, the records a hosted domain needs, their
check, and an optional authoritative server (also the DNS of end-to-end tests)."""
