"""The one-host components (the build host, hub images and data, registry pushes, promotion, the stack
key); imports the layers below resources and resources.command."""
