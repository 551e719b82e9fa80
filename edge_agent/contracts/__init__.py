"""The bottom layer: the types every part of the agent, and every driver, agrees on.

Nothing here imports anything of ours (standard library and pydantic only), so a driver, a test
or a tool can take these types without loading the agent. Import from the modules:
`edge_agent.contracts.samples` (values and quality), `.section` (the base of every settings
table), `.secrets` (secret references), `.source` (what a driver needs of every source and tag),
`.modbus` and `.opcua` (each protocol's tag and source settings).
"""
