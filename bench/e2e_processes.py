"""The processes of the end-to-end benchmark (bench/end_to_end.py), each its own Python program.

- `SERVER`: a neutral Modbus TCP server: unit 1, holding registers, float32 big-endian, every
  value changing every 100 ms, one listening port per device (printed after `ready`); FC 3
  only, pipelined frames. Its own code (not pymodbus's server) so that it costs the shared two
  cores as little as possible.
- `FLOOR`: the true floor, the bare loop with the agent's own libraries and nothing else:
  pymodbus block reads → struct decode → one SQLite row per cycle (WAL, synchronous FULL, one
  commit) → one MQTT message per cycle (paho, QoS 1, PUBACKs counted). No TagStore, no outbox,
  no shared encoder.
- `SUBSCRIBER`: a paho subscriber that stamps each arrival and keeps, per sample, arrival minus
  the sample's acquisition time; it answers `report` on stdin with a JSON line of counts and
  percentiles. It reads the agent's batch schemas and the floor's message.
"""

from __future__ import annotations

SERVER = r"""
import asyncio, struct, sys, time

devices, per_device = int(sys.argv[1]), int(sys.argv[2])  # float32 values per device
image = [bytearray(4 * per_device) for _ in range(devices)]
pack = struct.Struct(f">{per_device}f").pack_into

def refresh(cycle):
    for d, img in enumerate(image):
        pack(img, 0, *[cycle + i * 0.001 + d for i in range(per_device)])

async def ticker():
    cycle = 0
    while True:
        cycle += 1
        refresh(cycle % 1000)
        await asyncio.sleep(0.1 - time.time() % 0.1)

def serve(img):
    async def handle(reader, writer):
        buf = b""
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                buf += data
                out = []
                while len(buf) >= 12:
                    length = int.from_bytes(buf[4:6], "big")
                    if len(buf) < 6 + length:
                        break
                    tid, unit, fc = buf[0:2], buf[6], buf[7]
                    start, count = struct.unpack_from(">HH", buf, 8)
                    buf = buf[6 + length:]
                    if fc != 3 or count > 125 or 2 * (start + count) > len(img):
                        pdu = bytes([fc | 0x80, 2 if fc == 3 else 1])
                    else:
                        pdu = bytes([3, 2 * count]) + img[2 * start:2 * (start + count)]
                    head = tid + b"\0\0" + (len(pdu) + 1).to_bytes(2, "big") + bytes([unit])
                    out.append(head + pdu)
                writer.write(b"".join(out))
        except ConnectionError:
            pass
        writer.close()
    return handle

async def main():
    refresh(0)
    servers = [await asyncio.start_server(serve(img), "127.0.0.1", 0) for img in image]
    print("ready", ",".join(str(s.sockets[0].getsockname()[1]) for s in servers), flush=True)
    await ticker()

asyncio.run(main())
"""

FLOOR = r"""
import asyncio, json, signal, sqlite3, struct, sys, time
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pymodbus.client import AsyncModbusTcpClient

host, port, root, dbpath = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
devices = [int(p) for p in sys.argv[5].split(",")]
per_device = int(sys.argv[6])
interval = float(sys.argv[7])
BLOCK = 62
unpack = struct.Struct(">124H")
floats = struct.Struct(">62f")

db = sqlite3.connect(dbpath, isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA synchronous=FULL")
db.execute("CREATE TABLE cycle (id INTEGER PRIMARY KEY, ts_ns INTEGER, payload BLOB)")

mq = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="floor-" + root)
mq.max_inflight_messages_set(2000)
acked = 0
def on_publish(client, userdata, mid, reason_code, properties):
    global acked
    acked += 1
mq.on_publish = on_publish
mq.connect(host, port)
mq.loop_start()

names = [[f"d{d}.t{i}" for i in range(per_device)] for d in range(len(devices))]
stop = False
read = published = 0

async def device(d, client):
    values = {}
    first = 0
    for start in range(0, per_device, BLOCK):
        r = await client.read_holding_registers(2 * start, count=124, device_id=1)
        ts = time.time_ns()
        first = first or ts
        block = floats.unpack(unpack.pack(*r.registers))
        values.update(zip(names[d][start:start + BLOCK], block))
    return first, values

async def main():
    global read, published
    clients = [AsyncModbusTcpClient("127.0.0.1", port=p, timeout=2, retries=0) for p in devices]
    for c in clients:
        await c.connect()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, lambda: globals().__setitem__("stop", True))
    loop.add_signal_handler(signal.SIGUSR1, lambda: print(json.dumps({"read": read}), flush=True))
    print("ready", flush=True)
    deadline = loop.time()
    while not stop:
        for ts, values in await asyncio.gather(*(device(d, c) for d, c in enumerate(clients))):
            payload = json.dumps({"ts_ns": ts, "values": values}).encode()
            db.execute("INSERT INTO cycle (ts_ns, payload) VALUES (?, ?)", (ts, payload))
            mq.publish(f"{root}/floor", payload, qos=1)
            read += len(values)
            published += 1
        deadline += interval
        now = loop.time()
        if now > deadline:
            deadline = now
        await asyncio.sleep(deadline - now)
    while acked < published:
        await asyncio.sleep(0.01)
    print(json.dumps({"read": read, "published": published, "acked": acked}), flush=True)

asyncio.run(main())
"""

SUBSCRIBER = r"""
import json, sys, threading, time
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

host, port, topic = sys.argv[1], int(sys.argv[2]), sys.argv[3]
lat_ms = []
good = bad = messages = 0
lock = threading.Lock()

def samples(body, arrival):
    # (latency ms, good?) per sample, whatever the schema
    if "values" in body and "ts_ns" in body:  # the floor; or a compact batch with one time
        t = body["ts_ns"]
        bad = body.get("bad") or body.get("quality") or {}
        return [((arrival - t) / 1e6, k not in bad) for k in body["values"]]
    if isinstance(body.get("samples"), list):  # edge-agent/batch/1
        return [((arrival - s["ts_ns"]) / 1e6, s.get("quality", "good") == "good")
                for s in body["samples"]]
    if isinstance(body.get("groups"), list):  # edge-agent/batch/2: groups sharing a time
        out = []
        for g in body["groups"]:
            ms, q = (arrival - g["ts_ns"]) / 1e6, g.get("quality", {})
            out += [(ms, q.get(tag, "good") == "good") for tag in g["values"]]
        return out
    return []

def on_message(client, userdata, msg):
    global good, bad, messages
    arrival = time.time_ns()
    if not msg.payload.startswith(b"{"):
        return
    rows = samples(json.loads(msg.payload), arrival)
    with lock:
        messages += 1
        for ms, ok in rows:
            if ok:
                good += 1
                lat_ms.append(ms)
            else:
                bad += 1

c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-sub-" + topic.replace("/", "-"))
c.on_connect = lambda c, *a: c.subscribe(topic, 1)
c.on_subscribe = lambda *a: print("ready", flush=True)
c.on_message = on_message
c.connect(host, port)
c.loop_start()
for line in sys.stdin:
    cmd = line.strip()
    with lock:
        if cmd == "mark":  # latencies from here on; the counts run from the start
            lat_ms.clear()
            print("{}", flush=True)
            continue
        data = sorted(lat_ms)
        pct = lambda q: data[min(len(data) - 1, int(q * len(data)))] if data else -1.0
        print(json.dumps({"good": good, "bad": bad, "messages": messages,
                          "p50_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": pct(1.0)}), flush=True)
c.loop_stop()
"""

# The agent under cProfile, timed by the main thread's CPU clock (so waiting in epoll costs
# nothing) and only between SIGUSR1 (start) and SIGUSR2 (stop and write): the window, not startup.
PROFILED_AGENT = r"""
import cProfile, signal, sys, time
from edge_agent.cli import main

out, config = sys.argv[1], sys.argv[2]
prof = cProfile.Profile(time.thread_time)
signal.signal(signal.SIGUSR1, lambda *_: prof.enable())
signal.signal(signal.SIGUSR2, lambda *_: (prof.disable(), prof.dump_stats(out)))
sys.exit(main(["run", config]))
"""
