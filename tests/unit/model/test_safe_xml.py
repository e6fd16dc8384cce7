"""Safe XML: no DTDs, no entities, a size cap, line numbers, and sentences instead of tracebacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from cumulo.errors import ModelError, Problem
from cumulo.model import load_service, parse_configuration, parse_definition, read_definition
from cumulo.model.xmlsafe import Node, parse_xml

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
]>
<ServiceDefinition name="&lol2;"/>"""

EXTERNAL = b"""<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY ext SYSTEM "file:///etc/passwd">]>
<ServiceDefinition name="&ext;"/>"""


def test_lines_are_kept_for_every_element() -> None:
    tree = parse_xml(b"<a>\n  <b>\n    <c x='1'/>\n  </b>\n</a>", "f.xml")
    assert isinstance(tree, Node)
    assert tree.line == 1
    assert tree.children[0].line == 2
    assert tree.children[0].children[0].line == 3
    assert tree.children[0].children[0].attrs == {"x": "1"}


@pytest.mark.parametrize("data", [BILLION_LAUGHS, EXTERNAL])
def test_dtds_and_entities_are_refused(data: bytes) -> None:
    result = parse_xml(data, "bad.csdef")
    assert isinstance(result, Problem)
    assert result.line == 2
    assert "refuses DTDs and entities" in result.message


def test_undeclared_entity_is_a_sentence() -> None:
    result = parse_xml(b"<a>\n&nope;</a>", "x")
    assert isinstance(result, Problem)
    assert str(result) == "x:2: is not well-formed XML: undefined entity."


def test_size_cap() -> None:
    result = parse_xml(b"<a/>" + b" " * 100, "big.csdef", max_bytes=50)
    assert isinstance(result, Problem)
    assert result.message == "is 104 bytes; cumulo reads files of at most 50 bytes."


def test_size_cap_on_disk(tmp_path: Path) -> None:
    (tmp_path / "ServiceDefinition.csdef").write_bytes(b" " * (1024 * 1024 + 1))
    (tmp_path / "ServiceConfiguration.cscfg").write_bytes(b"<x/>")
    with pytest.raises(ModelError) as info:
        load_service(tmp_path)
    assert "cumulo reads files of at most 1048576 bytes" in str(info.value)


def test_empty_and_binary_input() -> None:
    assert isinstance(parse_xml(b"", "e"), Problem)
    assert isinstance(parse_xml(b"\xff\xfe\x00garbage", "g"), Problem)


def test_byte_order_mark_is_accepted() -> None:
    data = (
        b"\xef\xbb\xbf<ServiceDefinition name='x' xmlns="
        b"'http://schemas.microsoft.com/ServiceHosting/2008/10/ServiceDefinition'>"
        b"<WorkerRole name='W'/></ServiceDefinition>"
    )
    assert parse_definition(data).name == "x"


def test_wrong_root_element() -> None:
    model, problems = read_definition(b"<ServiceConfiguration/>", "a.csdef")
    assert model is None
    assert [str(p) for p in problems] == [
        "a.csdef:1: has root element <ServiceConfiguration>; expected <ServiceDefinition>."
    ]


def test_parse_configuration_raises_with_all_problems() -> None:
    data = (
        b'<ServiceConfiguration xmlns="http://schemas.microsoft.com/ServiceHosting/2008/10/'
        b'ServiceConfiguration" serviceName="s" bogus="1">\n'
        b'<Role name="A"><Instances count="x"/></Role>\n</ServiceConfiguration>'
    )
    with pytest.raises(ModelError) as info:
        parse_configuration(data, "c.cscfg")
    assert [str(p) for p in info.value.problems] == [
        "c.cscfg:1: ServiceConfiguration has unknown attribute 'bogus'; allowed: 'serviceName', "
        "'osFamily', 'osVersion' or 'schemaVersion'.",
        "c.cscfg:2: Instances of Role 'A' has count 'x'; expected a whole number.",
    ]


def test_missing_files_are_sentences(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as info:
        load_service(tmp_path)
    assert str(info.value) == f"{tmp_path}: holds no ServiceDefinition.csdef."
    (tmp_path / "ServiceDefinition.csdef").write_bytes(b"<x/>")
    with pytest.raises(ModelError) as info:
        load_service(tmp_path)
    assert "pass --config" in str(info.value)
