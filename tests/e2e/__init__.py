"""End-to-end tests: the real Pulumi engine over a real sshd against a real Docker engine (marked e2e)."""
