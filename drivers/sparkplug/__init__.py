"""Sparkplug B 3.0 wire level, shared by the edge node (a sink) and the host application (a source).

`payload` is the codec (our samples' values ⇄ protobuf bytes; the only user of the generated
`sparkplug_b_pb2`), `topics` the `spBv1.0/...` namespace. Neither knows sessions or MQTT clients.
"""
