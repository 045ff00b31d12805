import pytest
from hypothesis import given
from hypothesis import strategies as st

from allocation.errors import NoHubForDevice
from allocation.hub_selection import select_hub, spread
from device_twin import HubSelection
from policies import HubRule

EAST = "hub-us-east.azure-devices.net"
WEST = "hub-eu-west.azure-devices.net"
RULES = [HubRule(location="us-east/*", hub=EAST), HubRule(location="eu-west/*", hub=WEST)]


def choose(location, linked=(EAST, WEST), fallback="reject", current=None, reg="dev-1"):
    return select_hub(
        location=location,
        linked_hubs=list(linked),
        rules=RULES,
        fallback=fallback,
        registration_id=reg,
        current_hub=current,
    )


@pytest.mark.parametrize(
    ("location", "hub"),
    [
        ("us-east/plant-1/line-1", EAST),
        ("US-EAST/Plant-2", EAST),
        ("eu-west/site-a", WEST),
    ],
)
def test_location_rules_pick_the_hub(location, hub):
    choice = choose(location)
    assert (choice.hub, choice.selection) == (hub, HubSelection.LOCATION)


def test_the_linked_hub_spelling_is_returned():
    choice = choose("us-east/x", linked=(EAST.upper(), WEST))
    assert choice.hub == EAST.upper()


def test_no_rule_under_reject_names_the_location():
    with pytest.raises(NoHubForDevice, match="ap-south/site-x"):
        choose("ap-south/site-x")


def test_a_mapped_hub_that_is_not_linked_under_reject_names_both():
    with pytest.raises(NoHubForDevice) as caught:
        choose("us-east/plant-1", linked=(WEST,))
    assert "us-east/plant-1" in str(caught.value)
    assert EAST in str(caught.value)


def test_spread_fallback_picks_a_linked_hub_and_flags_it():
    choice = choose("ap-south/site-x", fallback="spread")
    assert choice.hub in (EAST, WEST)
    assert choice.selection is HubSelection.SPREAD


def test_spread_keeps_a_device_on_its_current_linked_hub():
    for reg in ("a", "b", "c", "d", "e", "f"):
        assert choose("nowhere", fallback="spread", current=WEST, reg=reg).hub == WEST


def test_spread_spreads():
    hubs = [f"hub-{i}.azure-devices.net" for i in range(4)]
    chosen = {spread(hubs, f"device-{n}", None, "t").hub for n in range(200)}
    assert chosen == set(hubs)


hub_names = st.lists(
    st.from_regex(r"[a-z][a-z0-9-]{0,10}\.azure-devices\.net", fullmatch=True),
    min_size=1,
    max_size=6,
    unique=True,
)


@given(hubs=hub_names, reg=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,40}", fullmatch=True))
def test_spread_is_stable_linked_and_independent_of_order_and_case(hubs, reg):
    first = spread(hubs, reg, None, "t").hub
    assert first in hubs
    assert spread(list(reversed(hubs)), reg, None, "t").hub == first
    assert spread(hubs, reg.upper(), None, "t").hub == first
