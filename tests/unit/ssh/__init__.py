"""Unit tests of components/ssh.py: the SSH session against a real paramiko server."""
