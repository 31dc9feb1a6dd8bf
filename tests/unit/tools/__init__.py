"""Unit tests of tools/, the test and benchmark helpers."""
