"""Typed, validated stack config and what follows from it alone (a hub's run-time settings); imports
only components.constants."""
