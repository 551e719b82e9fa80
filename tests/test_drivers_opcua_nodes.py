"""OPC UA node references (every string form, browse paths, per-session resolution) and the
driver's other conversions that need no server: status codes, timestamps, values."""

from __future__ import annotations

import uuid

import pytest
from asyncua import ua

from drivers.opcua import OpcUaDriver, _Session, datetime_ns, quality_of, to_sample
from drivers.opcua_nodes import node_id, relative_path
from edge_agent.config import OpcUaSource, SubscriptionGroup
from edge_agent.contracts.opcua import BrowsePathRef, NodeIdRef, NodeRefError, parse_node_ref
from edge_agent.contracts.samples import Quality

NAMESPACES = ["http://opcfoundation.org/UA/", "urn:other", "urn:smelter:sim"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("i=2258", ua.NodeId(2258, 0)),
        ("ns=2;i=17", ua.NodeId(17, 2)),
        ("ns=1;s=fsf.matte_temp", ua.NodeId("fsf.matte_temp", 1)),
        ("s=plain", ua.NodeId("plain", 0)),
        ("nsu=urn:smelter:sim;s=a;b=c", ua.NodeId("a;b=c", 2)),
        (
            "ns=3;g=09087e75-8e5e-499b-954f-f2a9603db28a",
            ua.NodeId(uuid.UUID("09087e75-8e5e-499b-954f-f2a9603db28a"), 3),
        ),
        ("ns=1;b=AAEC", ua.NodeId(b"\x00\x01\x02", 1)),
    ],
)
def test_node_id_forms(text: str, expected: ua.NodeId) -> None:
    ref = parse_node_ref(text)
    assert isinstance(ref, NodeIdRef)
    assert node_id(ref, NAMESPACES) == expected


def test_namespace_uri_is_resolved_per_session() -> None:
    ref = parse_node_ref("nsu=urn:smelter:sim;s=x")
    assert isinstance(ref, NodeIdRef)
    assert node_id(ref, NAMESPACES).NamespaceIndex == 2
    after_restart = ["http://opcfoundation.org/UA/", "urn:smelter:sim"]
    assert node_id(ref, after_restart).NamespaceIndex == 1
    with pytest.raises(NodeRefError, match="no namespace 'urn:smelter:sim'"):
        node_id(ref, ["http://opcfoundation.org/UA/"])


def test_browse_path_elements() -> None:
    ref = parse_node_ref("/Objects/2:Plant/{urn:smelter:sim}fsf")
    assert isinstance(ref, BrowsePathRef)
    path = relative_path(ref, NAMESPACES)
    names = [(e.TargetName.NamespaceIndex, e.TargetName.Name) for e in path.Elements]
    assert names == [(0, "Objects"), (2, "Plant"), (2, "fsf")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("matte_temp", "neither a node id"),
        ("ns=x;s=a", "neither a node id"),
        ("i=abc", "not a numeric"),
        ("g=not-a-guid", "not a GUID"),
        ("b=%%%", "not a base64"),
        ("/", "empty"),
    ],
)
def test_bad_references_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(NodeRefError, match=message):
        parse_node_ref(text)


def test_status_code_to_quality() -> None:
    assert quality_of(ua.StatusCode(0)) == (Quality.GOOD, None)
    assert quality_of(None) == (Quality.GOOD, None)
    assert quality_of(ua.StatusCode(ua.StatusCodes.UncertainLastUsableValue)) == (
        Quality.UNCERTAIN,
        "UncertainLastUsableValue",
    )
    assert quality_of(ua.StatusCode(ua.StatusCodes.BadNodeIdUnknown)) == (
        Quality.BAD,
        "BadNodeIdUnknown",
    )


def test_datetimes_become_epoch_nanoseconds() -> None:
    from datetime import UTC, datetime

    assert datetime_ns(datetime(1970, 1, 1, 0, 0, 1, 5, tzinfo=UTC)) == 1_000_005_000
    assert datetime_ns(datetime(1970, 1, 1, 0, 0, 1)) == 1_000_000_000
    assert datetime_ns(None) is None
    assert datetime_ns(datetime(1601, 1, 1)) is None


def test_a_float_variant_keeps_float32_precision_a_double_keeps_its_own() -> None:
    def value(variant: ua.Variant) -> object:
        return to_sample("fsf.x", ua.DataValue(variant), 1, server_ts=False).value

    wide = 18.404083251953125  # 18.404083 as a float32, widened
    assert repr(value(ua.Variant(wide, ua.VariantType.Float))) == "18.404083"
    assert repr(value(ua.Variant(wide, ua.VariantType.Double))) == "18.404083251953125"


def test_percent_deadband_is_requested_as_such() -> None:
    """asyncua's own server ignores percent deadbands (it logs "not implemented"), so the
    simulator cannot show one working; what we can check is that we ask for it correctly."""
    group = SubscriptionGroup.model_validate(
        {"name": "pct", "deadband": "percent", "deadband_value": 2.5, "queue_size": 4}
    )
    src = OpcUaSource.model_validate(
        {"name": "fsf", "protocol": "opcua", "endpoint": "opc.tcp://127.0.0.1:1/",
         "tag": [{"id": "fsf.x", "node": "ns=2;s=x"}]}
    )  # fmt: skip
    session = _Session(OpcUaDriver(src), None, src.tag)  # type: ignore[arg-type]
    session.node_ids[0] = ua.NodeId("x", 2)
    item = session._item(0, group)
    flt = item.RequestedParameters.Filter
    assert (flt.DeadbandType, flt.DeadbandValue) == (2, 2.5)
    assert item.RequestedParameters.QueueSize == 4


def test_config_refuses_an_unparsable_node() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="neither a node id"):
        OpcUaSource.model_validate(
            {"name": "fsf", "protocol": "opcua", "endpoint": "opc.tcp://h:4840/",
             "tag": [{"id": "fsf.x", "node": "ns=2;q=x"}]}
        )  # fmt: skip
