"""Unit tests of components/resources/: the dynamic providers and the state they keep."""
