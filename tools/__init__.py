"""Development tools for workhub's tests and benchmarks (not part of the Pulumi program)."""
