"""Reading the simulators' OPC UA tags with a bare asyncua client, status codes kept."""

from __future__ import annotations

from asyncua import Client, Node, ua

from simulators.tags import NAMESPACE_URI


async def node(client: Client, tag: str) -> Node:
    ns = await client.get_namespace_index(NAMESPACE_URI)
    return client.get_node(ua.NodeId(tag, ns))


async def read(client: Client, tag: str) -> ua.DataValue:
    return await (await node(client, tag)).read_data_value(raise_on_bad_status=False)
