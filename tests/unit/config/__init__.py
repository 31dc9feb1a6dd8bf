"""Unit tests of components/config/: the models, the checks, the Swarm rules, a hub's run-time settings."""
