"""What a stack will build, decided from its config and the project's files before anything runs: the
build context, the Dockerfile checks, each hub's build identity; imports config and render (a
build's identity hashes its rendered build args)."""
