#!/bin/sh
# Install, upgrade or remove the edge agent as a systemd service.
#
#   deploy/install.sh                      build a wheel from this checkout and install it
#   deploy/install.sh --wheel FILE         install a wheel built elsewhere (air-gapped PCs)
#   deploy/install.sh --find-links DIR     resolve dependencies from a local wheel directory
#   deploy/install.sh --root DIR           place files under DIR instead of / (staging, tests);
#                                          nothing is enabled or started then
#   deploy/install.sh --no-compile         skip byte-compiling (tests, throw-away staging only:
#                                          the service cannot write __pycache__ under /opt)
#   deploy/install.sh --serial-port DEV    let the service open serial port DEV (repeatable):
#                                          drop-in edge-agent.service.d/serial.conf (dialout)
#   deploy/install.sh --uninstall [--purge]
#
# Layout: /opt/edge-agent/venv (the program), /etc/edge-agent/agent.toml (the operator's config,
# never overwritten), /etc/edge-agent/agent.example.toml (refreshed on every install),
# /etc/edge-agent/credentials/ (secrets for LoadCredential=, root only),
# /etc/systemd/system/edge-agent.service, /var/lib/edge-agent (state; systemd creates it).
# Running it again is an upgrade: same result, operator's files untouched.
set -eu

ROOT=/
MODE=install
PURGE=no
WHEEL=
FIND_LINKS=
COMPILE=--compile
SERIAL_PORTS=
PYTHON=${PYTHON:-python3}
SRC=$(cd "$(dirname "$0")/.." && pwd)

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
die() { echo "install.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case $1 in
        --root) ROOT=${2:?--root needs a directory}; shift 2 ;;
        --wheel) WHEEL=${2:?--wheel needs a file}; shift 2 ;;
        --find-links) FIND_LINKS=${2:?--find-links needs a directory}; shift 2 ;;
        --python) PYTHON=${2:?--python needs an interpreter}; shift 2 ;;
        --uninstall) MODE=uninstall; shift ;;
        --purge) PURGE=yes; shift ;;
        --no-compile) COMPILE=--no-compile; shift ;;
        --serial-port)
            port=${2:?--serial-port needs a device path}
            case $port in /dev/*) ;; *) die "--serial-port $port: give a path under /dev" ;; esac
            SERIAL_PORTS="$SERIAL_PORTS $port"; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "install.sh: unknown option $1" >&2; usage 2 ;;
    esac
done

ROOT=$(cd "$ROOT" 2>/dev/null && pwd) || die "root directory does not exist"
[ "$ROOT" = / ] && P= || P=$ROOT
OPT=$P/opt/edge-agent
ETC=$P/etc/edge-agent
UNIT_DIR=$P/etc/systemd/system
UNIT=$UNIT_DIR/edge-agent.service
DROPIN=$UNIT_DIR/edge-agent.service.d/serial.conf
LIVE=no
# Only a real install talks to systemd; a staging root just receives files.
if [ "$ROOT" = / ] && [ -d /run/systemd/system ]; then LIVE=yes; fi

if [ "$ROOT" = / ] && [ "$(id -u)" != 0 ]; then die "installing into / needs root (or use --root DIR)"; fi

do_uninstall() {
    if [ "$LIVE" = yes ]; then
        systemctl disable --now edge-agent.service 2>/dev/null || true
    fi
    rm -f "$UNIT" "$DROPIN"
    rmdir "$UNIT_DIR/edge-agent.service.d" 2>/dev/null || true
    rm -rf "$OPT"
    if [ "$PURGE" = yes ]; then
        rm -rf "$ETC" "$P/var/lib/edge-agent" "$P/var/lib/private/edge-agent"
    fi
    if [ "$LIVE" = yes ]; then systemctl daemon-reload; fi
    if [ "$PURGE" = yes ]; then
        echo "edge-agent removed, config and state purged"
    else
        echo "edge-agent removed; config in $ETC and state kept (--purge removes them)"
    fi
}

build_wheel() {
    out=$1
    PIP_OPTS=
    [ -n "$FIND_LINKS" ] && PIP_OPTS="--find-links $FIND_LINKS"
    # shellcheck disable=SC2086
    "$PYTHON" -m pip wheel --quiet --no-deps $PIP_OPTS --wheel-dir "$out" "$SRC" >&2
    ls "$out"/smelter_edge_agent-*.whl
}

# The serial drop-in with one DeviceAllow= line per --serial-port (the template names one).
install_serial_dropin() {
    mkdir -p "$(dirname "$DROPIN")"
    template=$SRC/deploy/edge-agent-serial.conf
    {
        grep -v '^DeviceAllow=@SERIAL_PORT@' "$template"
        for port in $SERIAL_PORTS; do echo "DeviceAllow=$port rw"; done
    } > "$DROPIN.tmp"
    chmod 0644 "$DROPIN.tmp"
    mv "$DROPIN.tmp" "$DROPIN"
    echo "serial access for:$SERIAL_PORTS (add the ports' group if it is not dialout)"
}

do_install() {
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "$PYTHON is older than Python 3.11"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    if [ -z "$WHEEL" ]; then
        echo "building wheel from $SRC"
        WHEEL=$(build_wheel "$tmp")
    fi
    [ -f "$WHEEL" ] || die "wheel $WHEEL not found"

    mkdir -p "$OPT" "$ETC" "$UNIT_DIR" "$OPT/share/doc"
    [ -x "$OPT/venv/bin/python" ] || "$PYTHON" -m venv "$OPT/venv"
    PIP_OPTS=
    [ -n "$FIND_LINKS" ] && PIP_OPTS="--find-links $FIND_LINKS"
    # Dependencies first (no-op when satisfied), then our own package forced: an upgrade with an
    # unchanged version number still replaces the code.
    # shellcheck disable=SC2086
    "$OPT/venv/bin/python" -m pip install --quiet $COMPILE $PIP_OPTS "$WHEEL"
    # shellcheck disable=SC2086
    "$OPT/venv/bin/python" -m pip install --quiet $COMPILE --no-deps --force-reinstall $PIP_OPTS "$WHEEL"

    example=$SRC/config/plant.example.toml
    [ -f "$example" ] || example=$SRC/config/demo.toml
    install -m 0644 "$example" "$ETC/agent.example.toml"
    [ -f "$ETC/agent.toml" ] || install -m 0644 "$example" "$ETC/agent.toml"
    install -d -m 0700 "$ETC/credentials"
    install -m 0644 "$SRC/deploy/edge-agent.service" "$UNIT"
    [ -f "$SRC/docs/operations.md" ] && install -m 0644 "$SRC/docs/operations.md" "$OPT/share/doc/"
    if [ -n "$SERIAL_PORTS" ]; then install_serial_dropin; fi

    if [ "$LIVE" = yes ]; then
        systemctl daemon-reload
        systemctl enable edge-agent.service
        # An upgrade restarts a running agent; a first install waits for the operator's config.
        systemctl try-restart edge-agent.service
        echo "installed; edit $ETC/agent.toml, then: systemctl start edge-agent"
    else
        echo "installed under $ROOT (files only; systemd not touched)"
    fi
}

"do_$MODE"
