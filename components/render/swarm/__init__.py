"""The Swarm scripts and documents: the stack file (stack.py), the node and deploy scripts
(scripts.py), data (data.py) and status (status.py); imports config, render.shell and the one-host
fragments in render.host."""
