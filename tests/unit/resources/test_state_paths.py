"""Stacks deployed before the move to layer folders keep working: the Pulumi SDK pickles each dynamic
provider into the state by module path (the `__provider` input and output of each resource, a secret:
base64 of a dill pickle naming the class, as `pulumi stack export --show-secrets` shows), and the
engine unpickles the one in a resource's state to refresh, diff, update and delete it. The blobs
below are byte for byte what commit ef26a9d (the last before the move) wrote."""

from __future__ import annotations

import base64

import dill
import pytest
from pulumi.dynamic.dynamic import serialize_provider

from components.resources.command import RemoteCommandProvider
from components.resources.swarm.member import SwarmMemberProvider

# serialize_provider(RemoteCommandProvider()) and serialize_provider(SwarmMemberProvider()) at ef26a9d.
OLD_BLOBS = {
    RemoteCommandProvider: "gASVMgAAAAAAAACMEWNvbXBvbmVudHMucmVtb3RllIwVUmVtb3RlQ29tbWFuZFByb3ZpZGVylJOUKYGULg==",
    SwarmMemberProvider: "gASVNgAAAAAAAACMF2NvbXBvbmVudHMuc3dhcm1fbWVtYmVylIwTU3dhcm1NZW1iZXJQcm92aWRlcpSTlCmBlC4=",
}


@pytest.mark.parametrize("provider", OLD_BLOBS, ids=lambda cls: cls.__name__)
def test_a_provider_the_old_layout_pickled_is_the_one_the_code_runs(provider):
    """The old module path (components.remote, components.swarm_member) still names the class."""
    assert type(dill.loads(base64.b64decode(OLD_BLOBS[provider]))) is provider


@pytest.mark.parametrize("provider", OLD_BLOBS, ids=lambda cls: cls.__name__)
def test_a_new_provider_blob_differs_from_the_old_one_only_in_its_module_path(provider):
    """What the moved code writes names the class where it lives now (so the old path is needed only
    for state written before the move)."""
    new = base64.b64decode(serialize_provider(provider()))
    assert provider.__module__.encode() in new
    assert type(dill.loads(new)) is provider


@pytest.mark.parametrize("provider", OLD_BLOBS, ids=lambda cls: cls.__name__)
def test_a_new_provider_blob_alone_is_no_change(provider):
    """An `up` with the moved code gives each resource a new `__provider` input; its diff must not see
    it, or every command of an existing stack would run again."""
    props = {"label": "hub-run", "create": "true", "connection": {"host": "h"}, "privateKey": "k", "role": "worker",
             "manager": {"host": "m"}, "triggers": [], "__provider": OLD_BLOBS[provider]}
    moved = {**props, "__provider": serialize_provider(provider())}
    assert provider().diff("id", props, moved).changes is False
