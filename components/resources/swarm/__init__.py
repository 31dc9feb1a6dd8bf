"""The Swarm components (the cluster, a node's membership, images, the stack); imports the layers below
resources, resources.command and the one-host components they build on."""
