"""Kept for stacks deployed before the move to layer folders: the Pulumi SDK pickles each dynamic
provider into the stack's state by its module path, and their state names
`components.swarm_member.SwarmMemberProvider`. The engine unpickles that name to refresh, diff,
update and delete those resources, so it must go on resolving (tests/unit/resources/test_state_compat.py). Nothing
else imports this module: the provider lives in components.resources.swarm.member."""

from components.resources.swarm.member import SwarmMemberProvider

__all__ = ["SwarmMemberProvider"]
