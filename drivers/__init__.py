"""Protocol adapters: tag definitions into Samples, write requests into protocol writes.

Drivers know OPC UA and Modbus and nothing of smelting, MQTT or InfluxDB.
"""
