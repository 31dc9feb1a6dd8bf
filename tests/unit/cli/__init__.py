"""Unit tests of workhub/, the CLI."""
