"""Our read responses decode exactly as pymodbus's own, keep the bytes, and log briefly."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusIOException
from pymodbus.pdu.bit_message import ReadCoilsResponse
from pymodbus.pdu.register_message import ReadHoldingRegistersResponse

from drivers.modbus_responses import Coils, HoldingRegisters, InputRegisters, register_responses

registers = st.lists(st.integers(0, 0xFFFF), min_size=0, max_size=125)


def frame(words: list[int]) -> bytes:
    return bytes([2 * len(words)]) + struct.pack(f">{len(words)}H", *words)


@given(registers)
def test_registers_and_block_are_pymodbus_s(words: list[int]) -> None:
    ours, theirs = HoldingRegisters(), ReadHoldingRegistersResponse()
    ours.decode(frame(words))
    theirs.decode(frame(words))
    assert ours.registers == theirs.registers == words
    assert ours.block == struct.pack(f">{len(words)}H", *words)


def test_an_odd_byte_count_drops_the_half_register_as_pymodbus_does() -> None:
    ours, theirs = HoldingRegisters(), ReadHoldingRegistersResponse()
    data = bytes([3, 0x12, 0x34, 0x56, 0x00])
    ours.decode(data)
    theirs.decode(data)
    assert ours.registers == theirs.registers == [0x1234]
    assert ours.block == b"\x12\x34"


def test_a_byte_count_beyond_the_frame_is_refused_like_pymodbus() -> None:
    data = bytes([10, 0, 1])
    with pytest.raises(ModbusIOException, match="byte_count 10"):
        ReadHoldingRegistersResponse().decode(data)
    with pytest.raises(ModbusIOException, match="byte_count 10"):
        HoldingRegisters().decode(data)


def test_str_names_the_response_without_its_data() -> None:
    pdu = InputRegisters(dev_id=7, transaction_id=42)
    pdu.decode(frame([54321] * 60))
    text = str(pdu)
    assert text == "InputRegisters(dev_id=7, transaction_id=42, function_code=4)"
    assert "54321" not in text
    coils = Coils(dev_id=1, transaction_id=3)
    coils.decode(bytes([1, 0b101]))
    theirs = ReadCoilsResponse()
    theirs.decode(bytes([1, 0b101]))
    assert coils.bits == theirs.bits
    assert "True" not in str(coils)


async def test_a_client_decodes_read_responses_with_ours() -> None:
    client = AsyncModbusTcpClient("127.0.0.1", port=1)
    register_responses(client)
    decoder = client.ctx.framer.decoder
    for code, cls in ((3, HoldingRegisters), (4, InputRegisters), (1, Coils)):
        pdu = decoder.decode(bytes([code]) + frame([1, 2]))
        assert type(pdu) is cls
