"""The one-host scripts and documents: the build host's scripts (build.py), a hub's deploy, data and
status scripts (deploy.py), its Compose files, HAProxy config and env file (documents.py); imports
config and render.shell."""
