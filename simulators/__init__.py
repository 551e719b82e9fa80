"""Simulated smelter plant served over real OPC UA and Modbus TCP. The agent never imports this,
except for the `demo` command."""
