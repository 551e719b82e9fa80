"""Protocol adapters: they turn tag definitions into Samples and write requests into protocol writes.

Drivers know OPC UA and Modbus and nothing of smelting, MQTT or InfluxDB.
"""
