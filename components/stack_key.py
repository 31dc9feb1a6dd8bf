"""Kept for stacks deployed before the move to layer folders: the Pulumi SDK pickles each dynamic
provider into the stack's state by its module path, and the state of every stack whose hubs have a
secret names `components.stack_key.StackKeyProvider` (its fingerprint key). The engine unpickles that
name to refresh, diff, update and delete the key, so it must go on resolving
(tests/unit/resources/test_state_compat.py). Nothing else imports this module: the provider lives in
components.resources.host.stack_key."""

from components.resources.host.stack_key import StackKeyProvider

__all__ = ["StackKeyProvider"]
