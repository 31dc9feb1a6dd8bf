"""Unit tests, one folder per layer of the code; none needs the test host."""
