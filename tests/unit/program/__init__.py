"""Mock tests of components/program.py's resource graph, and the policy pack's rules on it."""
