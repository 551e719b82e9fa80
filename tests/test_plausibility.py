"""Plausibility: ranges, the server's EURange, Modbus "no value" markers and step limits."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from drivers.modbus_codec import block_segments
from edge_agent.config import ModbusTag, OpcUaTag
from edge_agent.contracts.samples import Quality, Sample
from edge_agent.plausibility import (
    IMPLAUSIBLE_STEP,
    NO_VALUE_MARKER,
    OUT_OF_RANGE,
    Plausibility,
    marker_value,
)

S = 1_000_000_000
NODE = "nsu=urn:smelter:sim;s=fsf.matte_temp"


def opcua(**kw: Any) -> OpcUaTag:
    return OpcUaTag.model_validate({"id": "fsf.matte_temp", "node": NODE, **kw})


def modbus(**kw: Any) -> ModbusTag:
    return ModbusTag.model_validate({"id": "offgas.temp", "address": 12, **kw})


def good(tag: str, value: float | int | bool | str, t_s: float = 0.0) -> Sample:
    return Sample(tag, value, Quality.GOOD, int(t_s * S))


def test_out_of_range_is_bad_keeps_the_raw_value_and_the_rest_passes() -> None:
    check = Plausibility.for_tags([opcua(valid_min=1000, valid_max=1500)])
    inside, below, above, other = check.apply(
        [good("fsf.matte_temp", 1250.0), good("fsf.matte_temp", 999.0),
         good("fsf.matte_temp", 3000.0), good("fsf.slag_temp", 9e9)]
    )  # fmt: skip
    assert inside.good
    assert (below.quality, below.value, below.reason, below.raw) == (
        Quality.BAD, None, OUT_OF_RANGE, 999.0,
    )  # fmt: skip
    assert (above.reason, above.raw) == (OUT_OF_RANGE, 3000.0)
    assert other.good  # a tag without limits is not checked


def test_bad_samples_and_non_numbers_pass_uncertain_ones_are_checked() -> None:
    check = Plausibility.for_tags([opcua(valid_min=0, valid_max=10)])
    bad = Sample.bad("fsf.matte_temp", "BadSensorFailure")
    uncertain = Sample("fsf.matte_temp", 50.0, Quality.UNCERTAIN, 0, None, "UncertainX")
    out = check.apply([bad, good("fsf.matte_temp", True), good("fsf.matte_temp", "x"), uncertain])
    assert out[:3] == [bad, good("fsf.matte_temp", True), good("fsf.matte_temp", "x")]
    assert (out[3].quality, out[3].reason) == (Quality.BAD, OUT_OF_RANGE)


def test_the_servers_eu_range_applies_where_the_file_gives_none() -> None:
    check = Plausibility.for_tags([opcua(), opcua(id="fsf.slag_temp", valid_max=2000)])
    check.learn_ranges(
        {"fsf.matte_temp": (1000.0, 1500.0), "fsf.slag_temp": (1000.0, 1500.0)},
        configured={"fsf.slag_temp"},
    )
    matte, slag = check.apply([good("fsf.matte_temp", 1600.0), good("fsf.slag_temp", 1600.0)])
    assert matte.reason == OUT_OF_RANGE
    assert slag.good  # the file's own range wins over the server's


@pytest.mark.parametrize(
    ("kind", "registers", "scale", "expected"),
    [
        ("int16", [0x8000], 0.1, -3276.8),
        ("uint16", [0xFFFF], 1.0, 65535),
        ("uint32", [0xFFFF, 0xFFFF], 1.0, 4294967295),
        ("int32", [0x8000, 0x0000], 1.0, -(2**31)),
    ],
)
def test_default_no_value_markers_match_what_the_driver_decodes(
    kind: str, registers: list[int], scale: float, expected: float
) -> None:
    tag = modbus(type=kind, scale=scale, no_value="default")
    block = b"".join(r.to_bytes(2, "big") for r in registers)
    ((_, at, decode, _),) = block_segments([tag], tag.address)
    (decoded,) = decode(block, at)  # the driver's own fast path
    assert decoded == expected
    (out,) = Plausibility.for_tags([tag]).apply([good(tag.id, decoded)])
    assert (out.quality, out.reason, out.raw) == (Quality.BAD, NO_VALUE_MARKER, expected)


def test_configured_markers_accept_the_registers_bits_and_are_off_by_default() -> None:
    tag = modbus(type="int16", scale=0.1, no_value=[0x7FFF, 0x8000])
    assert marker_value(tag, -(2**15)) == pytest.approx(-3276.8)
    check = Plausibility.for_tags([tag])
    top = 32767 * 0.1  # what the driver decodes from 0x7FFF: 3276.7000000000003
    hi, lo, fine = check.apply([good(tag.id, top), good(tag.id, -3276.8), good(tag.id, 350.0)])
    assert (hi.reason, lo.reason, fine.good) == (NO_VALUE_MARKER, NO_VALUE_MARKER, True)
    unset = Plausibility.for_tags([modbus(type="int16", scale=0.1)])
    assert unset.apply([good(tag.id, -3276.8)])[0].good


def test_a_spike_is_an_implausible_step_but_a_change_that_persists_is_believed() -> None:
    check = Plausibility.for_tags([opcua(max_step_per_s=10.0)])
    tag = "fsf.matte_temp"
    out = check.apply([good(tag, 1250.0, 0), good(tag, 1255.0, 1), good(tag, 1400.0, 2)])
    assert [s.quality for s in out] == [Quality.GOOD, Quality.GOOD, Quality.BAD]
    assert (out[2].reason, out[2].raw) == (IMPLAUSIBLE_STEP, 1400.0)
    # Judged against the last plausible value (1255 at 1 s): 145 K needs 14.5 s.
    assert check.apply([good(tag, 1400.0, 10)])[0].reason == IMPLAUSIBLE_STEP
    assert check.apply([good(tag, 1400.0, 16)])[0].good
    assert check.apply([good(tag, 1401.0, 16.5)])[0].good


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"valid_min": 10, "valid_max": 5}, "valid_min 10 is not below valid_max 5"),
        ({"max_step_per_s": 0}, "greater than 0"),
        ({"type": "float32", "no_value": "default"}, "integer types"),
        ({"type": "int16", "no_value": [70000]}, "int16 values (-32768..65535)"),
    ],
)
def test_limits_that_cannot_work_are_refused(fields: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError, match=words.replace("(", r"\(").replace(")", r"\)")):
        modbus(**fields)
