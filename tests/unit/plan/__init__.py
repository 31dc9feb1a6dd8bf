"""Unit tests of components/plan/: the build context, the Dockerfile checks, each hub's build identity."""
