"""The bus-time model (drivers/modbus_line.py): frame sizes, line time, booking."""

from __future__ import annotations

import pytest

from drivers.modbus_bus import LinkSettings
from drivers.modbus_line import (
    OVERBOOKED,
    bus_times,
    cycle_line_s,
    frame_chars,
    line_settings_suspect,
)
from drivers.modbus_plan import ReadRequest
from edge_agent.config import ModbusSource


def registers(count: int) -> ReadRequest:
    return ReadRequest(1, "holding", 0, count, ())


def test_frames_count_as_the_specification_says() -> None:
    # RTU: request 8 bytes; answer unit, function, byte count, data, CRC.
    assert frame_chars(registers(125), "rtu") == 8 + 5 + 250
    assert frame_chars(ReadRequest(1, "coil", 0, 9, ()), "rtu") == 8 + 5 + 2
    # ASCII: ':' + two hex digits per byte with a 1-byte LRC + CR LF.
    assert frame_chars(registers(1), "ascii") == (3 + 2 * 7) + (3 + 2 * 6)


def test_line_time_at_9600_8n1_and_the_inter_frame_silence() -> None:
    link = LinkSettings("rtu", serial_port="/dev/ttyUSB0", baudrate=9600, parity="N")
    assert link.char_time_s == pytest.approx(10 / 9600)
    assert link.silence_s == pytest.approx(3.5 * 10 / 9600)
    one = cycle_line_s([registers(125)], link)
    assert one == pytest.approx((263 + 7) * 10 / 9600)  # about 0.28 s for one full read
    fast = LinkSettings("rtu", serial_port="/dev/ttyUSB0", baudrate=115200)
    assert fast.silence_s == pytest.approx(0.00175)  # fixed above 19200 baud
    assert LinkSettings("rtu", serial_port="x", inter_frame_ms=5).silence_s == pytest.approx(0.005)
    paced = LinkSettings("rtu", serial_port="x", pause_between_requests_ms=20)
    assert paced.silence_s == pytest.approx(0.02)


def source(name: str, port: str, poll_s: float, addresses: range, **kw: object) -> ModbusSource:
    return ModbusSource.model_validate({
        "name": name, "protocol": "modbus", "transport": "rtu", "serial_port": port,
        "poll_interval_s": poll_s,
        "tag": [{"id": f"{name}.t{a}", "address": a} for a in addresses], **kw,
    })  # fmt: skip


def test_sources_on_one_port_book_one_line_at_their_own_rates() -> None:
    a = source("feeder", "/dev/ttyS9", 1.0, range(0, 10), baudrate=9600)
    b = source("burner", "/dev/ttyS9", 0.1, range(0, 1), baudrate=9600, one_request_per_tag=True)
    c = source("other", "/dev/ttyS8", 1.0, range(0, 1))
    buses = {bus.link.serial_port: bus for bus in bus_times([a, b, c])}
    assert set(buses) == {"/dev/ttyS9", "/dev/ttyS8"}
    shared = buses["/dev/ttyS9"]
    assert [load.name for load in shared.loads] == ["feeder", "burner"]
    feeder, burner = shared.loads
    assert shared.booked == pytest.approx(feeder.line_s / 1.0 + burner.line_s / 0.1)
    assert "feeder 1 requests" in shared.describe()
    assert not shared.overbooked


def test_an_overbooked_bus_says_so() -> None:
    busy = source("busy", "/dev/ttyS7", 0.2, range(0, 125, 2), baudrate=9600,
                  one_request_per_tag=True)  # fmt: skip
    [bus] = bus_times([busy])
    assert bus.booked > OVERBOOKED
    assert "OVERBOOKED" in bus.describe()


def test_tcp_has_no_line_and_a_gateway_is_modelled_at_its_serial_speed() -> None:
    tcp = ModbusSource.model_validate({"name": "t", "protocol": "modbus", "endpoint": "tcp://h"})
    gateway = ModbusSource.model_validate({
        "name": "g", "protocol": "modbus", "transport": "rtu_over_tcp", "endpoint": "tcp://gw:4001",
        "baudrate": 9600, "tag": [{"id": "g.x", "address": 0}],
    })  # fmt: skip
    [bus] = bus_times([tcp, gateway])
    assert bus.link.endpoint == "tcp://gw:4001"
    assert bus.loads[0].line_s == pytest.approx((8 + 7) * 11 / 9600 + 2 * 3.5 * 11 / 9600)


def test_only_a_read_where_every_answer_failed_suspects_the_line_settings() -> None:
    assert line_settings_suspect(["crc_error", "crc_error"])
    assert not line_settings_suspect(["crc_error", None])
    assert not line_settings_suspect([])
