"""Protocol adapters: tag definitions in, Samples out; write requests in, protocol writes out.

Drivers know OPC UA and Modbus and nothing of smelting, MQTT or InfluxDB.
"""
