"""RoleInstanceValue xpaths: every supported form resolves; anything else is refused."""

from __future__ import annotations

import pytest

from cumulo.model.xpaths import (
    SUPPORTED_FORMS,
    EndpointValue,
    InstanceContext,
    LocalResourceValue,
    XPathError,
    parse_xpath,
    resolve,
)

CTX = InstanceContext(
    deployment_id="d3adb33f",
    role_name="Web",
    instance_id="Web_IN_1",
    update_domain=1,
    fault_domain=0,
    endpoints={"Http": EndpointValue("127.0.1.2", 20001, "http")},
    local_resources={"Cache": LocalResourceValue("/data/Web_IN_1/Cache", 512)},
    settings={"Greeting": "hi"},
)

CI = "/RoleEnvironment/CurrentInstance"


@pytest.mark.parametrize(
    ("xpath", "value"),
    [
        ("/RoleEnvironment/Deployment/@emulated", "false"),
        ("/RoleEnvironment/Deployment/@id", "d3adb33f"),
        (f"{CI}/@id", "Web_IN_1"),
        (f"{CI}/@updateDomain", "1"),
        (f"{CI}/@faultDomain", "0"),
        (f"{CI}/@roleName", "Web"),
        (f"{CI}/ConfigurationSettings/ConfigurationSetting[@name='Greeting']/@value", "hi"),
        (f"{CI}/LocalResources/LocalResource[@name='Cache']/@path", "/data/Web_IN_1/Cache"),
        (f'{CI}/LocalResources/LocalResource[@name="Cache"]/@sizeInMB', "512"),
        (f"{CI}/Endpoints/Endpoint[@name='Http']/@protocol", "http"),
        (f"{CI}/Endpoints/Endpoint[@name='Http']/@address", "127.0.1.2"),
        (f"{CI}/Endpoints/Endpoint[ @name = 'Http' ]/@port", "20001"),
    ],
)
def test_resolve(xpath: str, value: str) -> None:
    assert parse_xpath(xpath) is not None
    assert resolve(xpath, CTX) == value


def test_every_documented_form_parses() -> None:
    assert len(SUPPORTED_FORMS) == 12
    for form in SUPPORTED_FORMS:
        assert parse_xpath(form) is not None, form


@pytest.mark.parametrize(
    "xpath",
    [
        "/RoleEnvironment/CurrentInstance/@name",
        "/RoleEnvironment/Roles/Role[@name='Web']/@count",
        f"{CI}/Endpoints/Endpoint[@name='Http']/@publicPort",
        f"{CI}/LocalResources/LocalResource[@name='Cache']/@value",
        f"{CI}/Endpoints/Endpoint[@name='Http' or 1=1]/@port",
        "//Endpoint/@port",
        "",
    ],
)
def test_unsupported_forms(xpath: str) -> None:
    assert parse_xpath(xpath) is None
    with pytest.raises(XPathError, match="is not a supported form"):
        resolve(xpath, CTX)


def test_emulated_flag() -> None:
    ctx = InstanceContext("d", "R", "R_IN_0", 0, 0, emulated=True)
    assert resolve("/RoleEnvironment/Deployment/@emulated", ctx) == "true"


@pytest.mark.parametrize(
    ("xpath", "what"),
    [
        (f"{CI}/ConfigurationSettings/ConfigurationSetting[@name='Nope']/@value", "setting"),
        (f"{CI}/LocalResources/LocalResource[@name='Nope']/@path", "local resource"),
        (f"{CI}/Endpoints/Endpoint[@name='Nope']/@port", "endpoint"),
    ],
)
def test_unknown_names(xpath: str, what: str) -> None:
    with pytest.raises(XPathError, match=f"names {what} 'Nope', which role 'Web' does not have"):
        resolve(xpath, CTX)
