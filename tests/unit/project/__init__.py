"""Tests of the repository as a whole: the layer contracts, the workflows, the benchmarks, pytest's output."""
