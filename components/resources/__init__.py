"""The only layer that registers Pulumi resources: the RemoteCommand provider (command.py), one host's
(host/) and Swarm's (swarm/) components and the build chain over both; imports every layer below it
(config, render, plan, ssh)."""
