"""`scripts/workhub status` of a stack on a Swarm: the status script (components/render/swarm/status.py)
run on the first manager that answers, its output as two aligned tables, the hubs' and the nodes'."""

from __future__ import annotations

from typing import Callable

from components.config.models import StackConfig
from components.ssh import RemoteCommandError, run_script
from components.resources.swarm.cluster import node_connection
from components.render.swarm.status import HUB_COLUMNS, NODE_COLUMNS, hub_rows, node_rows, parse_output, status_script

from .outputs import aligned


def format_status(config: StackConfig, stack: str, output: str) -> str:
    """The hubs' table (replicas running/desired, nodes, image, health, last update and its state),
    then the nodes' (address, role, availability, state, labels)."""
    sections = parse_output(output)
    hubs = [[c.upper() for c in HUB_COLUMNS]] + [[getattr(row, c) for c in HUB_COLUMNS]
                                                  for row in hub_rows(config, stack, sections)]
    nodes = [[c.upper() for c in NODE_COLUMNS]] + [[getattr(row, c) for c in NODE_COLUMNS]
                                                    for row in node_rows(sections)]
    return "\n".join([*aligned(hubs, indent=""), "", *aligned(nodes, indent="")])


def status(config: StackConfig, stack: str, private_key: str, log: Callable[[str], None]) -> str:
    """The status tables, read on the first manager that answers (a lost manager is skipped, said in
    `log`); RemoteCommandError when none does."""
    assert config.swarm is not None
    errors = []
    for name in config.swarm.managers:
        node = config.swarm.node(name)
        try:
            output = run_script(node_connection(config, node), private_key, status_script(config, stack), "status",
                                lambda line: None)
        except RemoteCommandError as error:
            log(f"status: manager {name} ({node.address}) did not answer: {error}")
            errors.append(name)
            continue
        return format_status(config, stack, output)
    raise RemoteCommandError(f"no manager answered ({', '.join(errors)}); check that they run "
                             "(scripts/workhub pulumi config get --stack <stack> workhub:swarm)")
