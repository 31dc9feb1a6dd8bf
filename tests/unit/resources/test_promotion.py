"""Which image each hub of a promoting stack runs: a pin wins, then what the source stack verified."""

from components.config.models import Hub
from components.resources.host.promotion import candidates

HUBS = [Hub(name="wbhubmanager", context="WBHubManager", port=4090),
        Hub(name="wbsaleshub", context="WBSalesHub", port=4091),
        Hub(name="wbfinhub", context="WBFinHub", port=4092)]
PORTS = {"wbhubmanager": 4090, "wbsaleshub": 4091, "wbfinhub": 4092}
STAGING = {
    "wbhubmanager": {"image": "wbhubmanager:staging-aaaaaaaaaaaa",
                     "verified": {"image": "wbhubmanager:staging-aaaaaaaaaaaa", "image_id": "sha256:1",
                                  "verified_at": "2026-11-29T20:00:00Z"}},
    "wbsaleshub": {"image": "wbsaleshub:staging-bbbbbbbbbbbb", "verified": {}},
}


def test_verified_hubs_are_promoted_under_this_stacks_tag():
    (manager, sales, fin) = candidates(HUBS, "production", PORTS, "staging", STAGING, {})
    assert manager.source_image == "wbhubmanager:staging-aaaaaaaaaaaa"
    assert manager.image == "wbhubmanager:production-aaaaaaaaaaaa" and manager.image_id == "sha256:1"
    assert manager.origin == "stack staging, verified healthy at 2026-11-29T20:00:00Z"
    assert sales.image is None
    assert sales.reason == "stack staging has not verified wbsaleshub: its last update did not bring it up healthy"
    assert fin.image is None and fin.reason == "stack staging has no wbfinhub"


def test_a_pin_wins_over_promotion():
    """workhub:pinnedImages is the rollback: that exact image runs, whatever staging has."""
    pinned = {"wbhubmanager": "wbhubmanager:production-000000000000"}
    manager = candidates(HUBS, "production", PORTS, "staging", STAGING, pinned)[0]
    assert manager.image == "wbhubmanager:production-000000000000" and manager.image_id is None
    assert manager.origin == "pinned in workhub:pinnedImages"
