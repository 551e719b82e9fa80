"""`edge-agent-sim`: the demo plant's OPC UA and Modbus servers, standalone.

Prints the endpoints, applies `--fault` specifications at start, optionally reads more fault
specifications from stdin (`--control`, one per line), and stops cleanly on SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from simulators.faults import FAULT_SYNTAX, FaultError, parse
from simulators.simulation import Simulation, SimulationOptions


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edge-agent-sim",
        description="Simulated copper smelter: flash furnace over OPC UA, off-gas line and kiln "
        "over Modbus TCP (docs/simulators.md).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="fault specifications:\n" + FAULT_SYNTAX,
    )
    p.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    p.add_argument("--opcua-port", type=int, default=4840, help="0 picks a free port")
    p.add_argument("--modbus-port", type=int, default=5020, help="0 picks a free port")
    p.add_argument("--modbus-rtu-over-tcp-port", type=int, default=None, metavar="PORT",
                   help="also serve RTU frames over TCP, as a serial gateway does")  # fmt: skip
    p.add_argument("--modbus-serial", default=None, metavar="DEVICE",
                   help="also serve Modbus RTU on this serial port (a socat pty end)")  # fmt: skip
    p.add_argument("--modbus-ascii-serial", default=None, metavar="DEVICE",
                   help="also serve Modbus ASCII on this serial port")  # fmt: skip
    p.add_argument("--time-scale", type=float, default=1.0, help="simulated s per wall s")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fault", action="append", default=[], metavar="SPEC",
                   help="apply a fault at start (repeatable)")  # fmt: skip
    p.add_argument("--control", action="store_true",
                   help="read further fault specifications from stdin, one per line")  # fmt: skip
    p.add_argument(
        "--cert-dir", type=Path,
        help="enable Basic256Sha256, Aes128Sha256RsaOaep and Aes256Sha256RsaPss (Sign, "
        "SignAndEncrypt); a self-signed certificate is generated here",
    )  # fmt: skip
    p.add_argument(
        "--users-file", type=Path,
        help="file of 'name:password' lines; anonymous OPC UA sessions are then refused",
    )  # fmt: skip
    p.add_argument("--synthetic-tags", type=int, default=0, help="benchmark tags (up to 20000)")
    p.add_argument("--synthetic-rate-hz", type=float, default=1.0)
    return p


def read_users(path: Path) -> dict[str, str]:
    users = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        name, sep, password = line.partition(":")
        if not sep or not name:
            raise SystemExit(f"{path}:{n}: expected 'name:password'")
        users[name.strip()] = password
    return users


async def run(args: argparse.Namespace) -> int:
    if not 0 <= args.synthetic_tags <= 20000:
        print(f"--synthetic-tags {args.synthetic_tags}: give 0..20000", file=sys.stderr)
        return 2
    try:
        faults = [parse(f) for f in args.fault]
    except FaultError as exc:
        print(f"--fault: {exc}", file=sys.stderr)
        return 2
    options = SimulationOptions(
        host=args.host, opcua_port=args.opcua_port, modbus_port=args.modbus_port,
        time_scale=args.time_scale, seed=args.seed, cert_dir=args.cert_dir,
        users=read_users(args.users_file) if args.users_file else {},
        synthetic_tags=args.synthetic_tags, synthetic_rate_hz=args.synthetic_rate_hz,
        modbus_rtu_over_tcp_port=args.modbus_rtu_over_tcp_port,
        modbus_serial_port=args.modbus_serial, modbus_ascii_serial_port=args.modbus_ascii_serial,
    )  # fmt: skip
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sim = Simulation(options)
    try:
        await sim.start()
    except (OSError, RuntimeError) as exc:
        print(f"cannot start the simulators on {args.host} (OPC UA port {args.opcua_port}, "
              f"Modbus port {args.modbus_port}): {exc}; is another instance running? "
              "Choose other ports with --opcua-port/--modbus-port.", file=sys.stderr)  # fmt: skip
        return 1
    try:
        for fault in faults:
            await sim.apply(fault)
        print(f"opcua  {sim.opcua_endpoint}", flush=True)
        print(f"modbus {sim.modbus_endpoint}", flush=True)
        if args.modbus_rtu_over_tcp_port is not None:
            print(f"modbus rtu_over_tcp {sim.modbus_rtu_over_tcp_endpoint}", flush=True)
        for transport, device in (("rtu", args.modbus_serial), ("ascii", args.modbus_ascii_serial)):
            if device:
                print(f"modbus {transport} {device}", flush=True)
        control = asyncio.create_task(_control(sim)) if args.control else None
        await stop.wait()
        if control is not None:
            control.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await control
    finally:
        await sim.stop()
    print("stopped", flush=True)
    return 0


async def _control(sim: Simulation) -> None:
    """Fault specifications from stdin, so a shell or a demo script can script the plant.

    A pipe reader rather than a thread: a thread blocked in readline() would hold up exit."""
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while raw := await reader.readline():
        if not (line := raw.decode().strip()):
            continue
        try:
            await sim.apply(line)
            print(f"applied {line}", flush=True)
        except FaultError as exc:
            print(f"error: {exc}", flush=True)


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(run(build_parser().parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
