"""Loading the config file: every problem reported once, with its key path and value."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from edge_agent.config import (
    AgentConfig,
    KpiSectionBase,
    ModbusTag,
    OpcUaTag,
)
from edge_agent.config.loader import ConfigError, load_config, parse_override
from edge_agent.config.rules import SourceView, TagView, check_rules

ROOT = Path(__file__).resolve().parent.parent

OPCUA_SOURCE = """
[[source]]
name = "fsf"
protocol = "opcua"
endpoint = "opc.tcp://127.0.0.1:4840/"

[[source.tag]]
id = "fsf.matte_temp"
node = "ns=2;s=matte_temp"
"""

MODBUS_SOURCE = """
[[source]]
name = "offgas"
protocol = "modbus"
endpoint = "tcp://127.0.0.1:5020"

[[source.tag]]
id = "offgas.so2_pct"
table = "input"
address = 0
type = "float32"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plant.toml"
    path.write_text(textwrap.dedent(text))
    return path


def errors(path: Path, overrides: list[str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides or [])
    return info.value.lines


@pytest.mark.parametrize("name", ["demo.toml", "plant.example.toml"])
def test_shipped_files_validate(name: str) -> None:
    # The example names /etc/edge-agent files and systemd credentials: its content is judged.
    cfg = load_config(ROOT / "config" / name, resolve=name == "demo.toml")
    assert cfg.source, "the shipped files describe a plant"


def test_demo_plant_has_its_instruments() -> None:
    cfg = load_config(ROOT / "config" / "demo.toml")
    assert {"fsf", "offgas", "kiln"} <= {s.name for s in cfg.source}
    assert "fsf.matte_temp" in cfg.tags()


# ---------------------------------------------------------------------------------- bad files


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            '[agent]\nsite = "demo"\ncolour = "red"\n',
            'plant.toml: agent.colour: unknown key (got: "red")',
            id="unknown-key",
        ),
        pytest.param(
            '[mqtt]\nport = "eighteen"\n',
            "plant.toml: mqtt.port: Input should be a valid integer, unable to parse string as "
            'an integer (got: "eighteen")',
            id="wrong-type",
        ),
        pytest.param(
            "[mqtt]\nport = 70000\n",
            "plant.toml: mqtt.port: Input should be less than or equal to 65535 (got: 70000)",
            id="out-of-range",
        ),
        pytest.param(
            '[[source]]\nname = "fsf"\nprotocol = "opcua"\n',
            "plant.toml: source.fsf.endpoint: required key is missing",
            id="missing-required",
        ),
        pytest.param(
            '[[source]]\nname = "fsf"\nprotocol = "profibus"\nendpoint = "x"\n',
            "plant.toml: source.fsf: Input tag 'profibus' found using 'protocol' does not match "
            "any of the expected tags: 'opcua', 'modbus', 'mqtt', 'sparkplug'",
            id="unknown-protocol",
        ),
        pytest.param(
            '[agent]\ntimezone = "Mars/Olympus"\n',
            "plant.toml: agent.timezone: unknown time zone 'Mars/Olympus' (got: \"Mars/Olympus\")",
            id="field-validator",
        ),
    ],
)
def test_field_errors_name_key_path_and_value(tmp_path: Path, text: str, expected: str) -> None:
    lines = errors(write(tmp_path, text))
    assert [line.replace(str(tmp_path) + "/", "") for line in lines] == [expected]


def test_duplicate_tag_id(tmp_path: Path) -> None:
    path = write(tmp_path, OPCUA_SOURCE + '[[source.tag]]\nid = "fsf.matte_temp"\nnode = "s=x"\n')
    assert errors(path) == [
        f"{path}: source.fsf.tag.1.id: duplicate tag id (also in source 'fsf') "
        '(got: "fsf.matte_temp")'
    ]


def test_duplicate_source_name(tmp_path: Path) -> None:
    path = write(tmp_path, OPCUA_SOURCE + OPCUA_SOURCE.replace("fsf.matte_temp", "fsf.other"))
    assert errors(path) == [f'{path}: source.1.name: duplicate source name (got: "fsf")']


def test_overlapping_modbus_registers(tmp_path: Path) -> None:
    overlap = '[[source.tag]]\nid = "offgas.o2_pct"\ntable = "input"\naddress = 1\n'
    path = write(tmp_path, MODBUS_SOURCE + overlap)
    assert errors(path) == [
        f"{path}: source.offgas.tag.offgas.o2_pct.address: overlaps tag 'offgas.so2_pct' "
        "(input 0..1) on unit 1 (got: 1)"
    ]


def test_bits_may_share_a_status_register(tmp_path: Path) -> None:
    bits = "".join(
        f'[[source.tag]]\nid = "offgas.alarm_{b}"\ntable = "input"\naddress = 9\n'
        f'type = "bit"\nbit = {b}\n'
        for b in (0, 1)
    )
    assert load_config(write(tmp_path, MODBUS_SOURCE + bits)).tags()["offgas.alarm_1"]


def test_writable_tag_without_bounds(tmp_path: Path) -> None:
    path = write(tmp_path, OPCUA_SOURCE + "writable = true\nmin = 1100.0\n")
    assert errors(path) == [
        f"{path}: source.fsf.tag.fsf.matte_temp.max: a writable tag needs both min and max "
        "bounds (got: nothing)"
    ]


def test_min_above_max(tmp_path: Path) -> None:
    path = write(tmp_path, OPCUA_SOURCE + "min = 1300.0\nmax = 1200.0\n")
    assert errors(path) == [
        f"{path}: source.fsf.tag.fsf.matte_temp.max: max is below min (1300.0) (got: 1200.0)"
    ]


def test_quality_from_unknown_tag(tmp_path: Path) -> None:
    path = write(tmp_path, MODBUS_SOURCE + 'quality_from = { tag = "offgas.status", mask = 7 }\n')
    assert errors(path) == [
        f"{path}: source.offgas.tag.offgas.so2_pct.quality_from.tag: unknown tag (got: "
        '"offgas.status")'
    ]


def test_inline_secret_is_refused_and_never_printed(tmp_path: Path) -> None:
    path = write(tmp_path, '[mqtt]\nusername = "edge"\npassword = "hunter2"\n')
    lines = errors(path)
    assert len(lines) == 1
    assert lines[0].startswith(f"{path}: mqtt.password: secrets are not written inline")
    assert "hunter2" not in "\n".join(lines)


def test_misspelt_secret_key_is_not_printed_either(tmp_path: Path) -> None:
    lines = errors(write(tmp_path, '[mqtt]\npasword = "hunter2"\n'))
    assert lines[0].endswith("mqtt.pasword: unknown key (got: <secret, not shown>)")


def test_secret_references_are_resolved_at_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, '[mqtt]\nusername = "edge"\npassword = { credential = "mqtt" }\n')
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "mqtt").write_text("s3cret\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "creds"))
    cfg = load_config(path)
    assert cfg.mqtt is not None
    assert cfg.mqtt.password is not None
    assert cfg.mqtt.password.credential == "mqtt"
    (tmp_path / "creds" / "mqtt").unlink()  # resolved once: the services need the file no more
    assert cfg.mqtt.password.resolve() == "s3cret"
    assert "s3cret" not in repr(cfg) + str(cfg.model_dump())


def test_kpi_naming_an_unknown_tag() -> None:
    class Ratio(KpiSectionBase):
        def referenced_tags(self) -> list[tuple[str, str]]:
            return [("inputs.escrap", "fsf.escrap_feed_rate")]

    tag = OpcUaTag(id="fsf.matte_temp", node="s=x")
    sources = [
        SourceView(("source", 0), "fsf", False, [TagView(("source", 0, "tag", 0), tag.id, tag)])
    ]
    [violation] = check_rules(sources, {"recycled_ratio": Ratio()})
    assert violation.loc == ("kpi", "recycled_ratio", "inputs", "escrap")
    assert (violation.message, violation.value) == ("unknown tag", "fsf.escrap_feed_rate")


def test_rules_also_hold_for_configs_built_in_code() -> None:
    tag = ModbusTag(id="offgas.sp", address=0, writable=True)
    with pytest.raises(ValidationError, match=r"source\.0\.tag\.0\.min: a writable tag"):
        AgentConfig.model_validate(
            {
                "source": [
                    {"name": "offgas", "protocol": "modbus", "endpoint": "tcp://x", "tag": [tag]}
                ]
            }
        )


def test_malformed_toml_gives_line_number(tmp_path: Path) -> None:
    path = write(tmp_path, '[agent]\nsite = "demo"\ninstance_id = edge-01\n')
    assert errors(path) == [f"{path}: line 3, column 15: invalid TOML: invalid value"]


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.toml"
    assert errors(path) == [f"{path}: cannot read: No such file or directory"]


def test_unknown_key_wrong_type_and_duplicate_tag_all_reported(tmp_path: Path) -> None:
    """Pydantic skips model validators when fields fail; the rules must still be reported."""
    text = OPCUA_SOURCE + '[[source.tag]]\nid = "fsf.matte_temp"\nnode = "s=x"\n'
    text += '[agent]\ncolour = "red"\nshutdown_timeout_s = "soon"\n'
    lines = [
        line.removeprefix(f"{tmp_path}/plant.toml: ") for line in errors(write(tmp_path, text))
    ]
    assert lines == [
        "agent.shutdown_timeout_s: Input should be a valid number, unable to parse string as a "
        'number (got: "soon")',
        'agent.colour: unknown key (got: "red")',
        "source.fsf.tag.1.id: duplicate tag id (also in source 'fsf') (got: \"fsf.matte_temp\")",
    ]


# ------------------------------------------------------------------------------------ --set


@pytest.mark.parametrize(
    ("item", "key", "value"),
    [
        ("mqtt.port=1884", "mqtt.port", 1884),
        ("agent.state_dir=state", "agent.state_dir", "state"),
        ('agent.site="42"', "agent.site", "42"),
        ("kpi.co2.enabled=false", "kpi.co2.enabled", False),
        ("mqtt.backup_servers=['a:1883', 'b:1883']", "mqtt.backup_servers", ["a:1883", "b:1883"]),
        ('mqtt.password={ env = "MQTT_PW" }', "mqtt.password", {"env": "MQTT_PW"}),
        ("source.fsf.endpoint=opc.tcp://10.0.0.5:4840/", "source.fsf.endpoint",
         "opc.tcp://10.0.0.5:4840/"),
    ],
)  # fmt: skip
def test_override_values_are_toml_literals_or_strings(item: str, key: str, value: object) -> None:
    assert parse_override(item) == (key, value)


def test_overrides_address_entries_by_name_and_id(tmp_path: Path) -> None:
    path = write(tmp_path, OPCUA_SOURCE)
    cfg = load_config(
        path,
        [
            "source.fsf.endpoint=opc.tcp://10.0.0.5:4840/",
            "source.fsf.tag.fsf.matte_temp.unit=°C",
            "mqtt.port=1884",
            "agent.state_dir=/var/lib/edge-agent",
        ],
    )
    assert cfg.source[0].endpoint == "opc.tcp://10.0.0.5:4840/"
    assert cfg.tags()["fsf.matte_temp"].unit == "°C"
    assert cfg.mqtt is not None
    assert cfg.mqtt.port == 1884
    assert str(cfg.agent.state_dir) == "/var/lib/edge-agent"


def test_bad_override_values_name_set(tmp_path: Path) -> None:
    path = write(tmp_path, OPCUA_SOURCE + '[agent]\ncolour = "red"\n')
    assert errors(path, ["mqtt.port=99999"]) == [
        f'{path}: agent.colour: unknown key (got: "red")',
        "--set: mqtt.port: Input should be less than or equal to 65535 (got: 99999)",
    ]


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("mqtt.port", "--set 'mqtt.port': expected key.path=value"),
        ("mqtt..port=1", "--set 'mqtt..port=1': expected key.path=value"),
        ("source.kiln.endpoint=x", "--set source.kiln.endpoint: source has no entry 'kiln' "
         "(entries: fsf)"),
        ("source.fsf.endpoint.host=x", "--set source.fsf.endpoint.host: source.fsf.endpoint "
         "is a value, not a table"),
        ("source.fsf=x", "--set source.fsf: names a whole entry, not a key"),
    ],
)  # fmt: skip
def test_malformed_overrides(tmp_path: Path, item: str, expected: str) -> None:
    assert errors(write(tmp_path, OPCUA_SOURCE), [item]) == [expected]


def test_override_of_unknown_key_is_an_unknown_key(tmp_path: Path) -> None:
    assert errors(write(tmp_path, OPCUA_SOURCE), ["mqtt.prot=1884"]) == [
        "--set: mqtt.prot: unknown key (got: 1884)"
    ]


def _all_fields(model: type[BaseModel], seen: set[type[BaseModel]]) -> set[tuple[str, str]]:
    if model in seen:
        return set()
    seen.add(model)
    found = set()
    for name, field in model.model_fields.items():
        found.add((model.__name__, name))
        stack = [field.annotation]
        while stack:
            annotation = stack.pop()
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                found |= _all_fields(annotation, seen)
            stack.extend(getattr(annotation, "__args__", ()))
    return found


def test_example_file_shows_every_option() -> None:
    """config/plant.example.toml is the reference: each option appears, set or commented."""
    text = (ROOT / "config" / "plant.example.toml").read_text()
    missing = sorted(
        f"{model}.{name}"
        for model, name in _all_fields(AgentConfig, set())
        if not re.search(rf"(^|[\s{{,#]){name} = |\[\[?([\w.]+\.)?{name}\]", text, re.MULTILINE)
    )
    assert not missing, f"add these options to config/plant.example.toml: {missing}"


def test_sources_sharing_a_serial_bus_must_agree_on_its_settings() -> None:
    def rtu(name: str, **kw: object) -> dict[str, object]:
        return {"name": name, "protocol": "modbus", "transport": "rtu",
                "serial_port": "/dev/ttyS4", **kw}  # fmt: skip

    AgentConfig.model_validate({"source": [rtu("a"), rtu("b", poll_interval_s=5)]})
    with pytest.raises(
        ValidationError, match=r"sources a and b share a bus .* disagree on baudrate"
    ):
        AgentConfig.model_validate({"source": [rtu("a"), rtu("b", baudrate=9600)]})
    with pytest.raises(ValidationError, match="transport 'rtu' needs serial_port"):
        AgentConfig.model_validate({"source": [rtu("a", serial_port=None)]})
    with pytest.raises(ValidationError, match="address 0 with address_base = 1"):
        AgentConfig.model_validate(
            {"source": [rtu("a", address_base=1, tag=[{"id": "a.x", "address": 0}])]}
        )


def test_the_same_registers_on_two_serial_ports_are_two_devices() -> None:
    def rtu(name: str, port: str) -> dict[str, object]:
        return {"name": name, "protocol": "modbus", "transport": "rtu", "serial_port": port,
                "tag": [{"id": f"{name}.x", "address": 0}]}  # fmt: skip

    AgentConfig.model_validate({"source": [rtu("a", "/dev/ttyS1"), rtu("b", "/dev/ttyS2")]})
    with pytest.raises(ValidationError, match=r"overlaps tag 'a\.x'"):
        AgentConfig.model_validate({"source": [rtu("a", "/dev/ttyS1"), rtu("b", "/dev/ttyS1")]})
