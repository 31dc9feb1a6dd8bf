"""Unit tests of components/render/: the rendered scripts (goldens in tests/golden) and their behaviour under bash."""
