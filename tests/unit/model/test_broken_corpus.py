"""The broken-input corpus: one defect per case, each asserting the sentence and its file:line.

Every case edits the valid base service in tests/fixtures/corpus/ (``old`` -> ``new`` in the
.csdef or the .cscfg) and names the text that marks the line the problem must point at.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from cumulo.errors import ModelError
from cumulo.model import service_from_bytes

BASE = Path(__file__).resolve().parents[2] / "fixtures" / "corpus"
CSDEF = (BASE / "ServiceDefinition.csdef").read_text()
CSCFG = (BASE / "ServiceConfiguration.cscfg").read_text()
DEF, CFG = "ServiceDefinition.csdef", "ServiceConfiguration.cscfg"


@dataclass(frozen=True)
class Case:
    id: str
    file: str  # the file edited: DEF or CFG
    old: str
    new: str
    message: str  # the whole sentence expected (after "file:line: ")
    at: str  # text on the line the problem points at (first match in the reported file)
    reported: str | None = None  # file the problem is reported in (default: the edited one)
    count: int = 1  # problems in total (a few defects honestly cause a follow-on one)


CASES = [
    # --- syntax: XML and namespaces -------------------------------------------------------
    Case(
        "not-well-formed",
        DEF,
        "</Sites>",
        "",
        "is not well-formed XML: mismatched tag.",
        "  </WebRole>",
    ),
    Case(
        "dtd-refused",
        DEF,
        '<?xml version="1.0" encoding="utf-8"?>\n',
        '<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE x [<!ENTITY a "b">]>\n',
        "declares a DTD (<!DOCTYPE>); cumulo refuses DTDs and entities in service files.",
        "<!DOCTYPE",
    ),
    Case(
        "wrong-namespace",
        DEF,
        "ServiceHosting/2008/10/ServiceDefinition",
        "ServiceHosting/2008/11/ServiceDefinition",
        "<ServiceDefinition> is in namespace "
        "'http://schemas.microsoft.com/ServiceHosting/2008/11/ServiceDefinition'; expected "
        'xmlns="http://schemas.microsoft.com/ServiceHosting/2008/10/ServiceDefinition".',
        "<ServiceDefinition",
    ),
    Case(
        "foreign-element",
        DEF,
        "    <Sites>\n",
        '    <x:Extra xmlns:x="urn:other" />\n    <Sites>\n',
        "WebRole 'Web' has element <Extra> in urn:other; expected the namespace "
        "http://schemas.microsoft.com/ServiceHosting/2008/10/ServiceDefinition.",
        "<x:Extra",
    ),
    Case(
        "unknown-cumulo-attribute",
        DEF,
        "cumulo:wsgiApp=",
        "cumulo:wsgiapp=",
        "Site 'Main' of role 'Web' has unknown cumulo extension attribute 'wsgiapp'; did you "
        "mean 'wsgiApp'?",
        '<Site name="Main"',
    ),
    Case(
        "unknown-cumulo-element",
        DEF,
        "    <Sites>\n",
        "    <cumulo:Autoscale />\n    <Sites>\n",
        "WebRole 'Web' has unknown cumulo extension element <Autoscale>.",
        "<cumulo:Autoscale",
    ),
    # --- syntax: unknown names, required attributes, types -------------------------------
    Case(
        "unknown-attribute",
        DEF,
        'port="80" loadBalancerProbe',
        'port="80" idleTimeout="5" loadBalancerProbe',
        "InputEndpoint 'HttpIn' of role 'Web' has unknown attribute 'idleTimeout'; did you mean "
        "'idleTimeoutInMinutes'?",
        'name="HttpIn"',
    ),
    Case(
        "unknown-element",
        DEF,
        '  <WorkerRole name="Worker" vmsize="Small">\n',
        '  <WorkerRole name="Worker" vmsize="Small">\n    <LocalResource />\n',
        "WorkerRole 'Worker' has unknown element <LocalResource>; did you mean <LocalResources>?",
        "<LocalResource />",
    ),
    Case(
        "sites-in-worker",
        DEF,
        '    <Runtime executionContext="limited">',
        '    <Sites />\n    <Runtime executionContext="limited">',
        "WorkerRole 'Worker' has unknown element <Sites>; allowed: 'Certificates', "
        "'ConfigurationSettings', 'Endpoints', 'Imports', 'LocalResources', 'LocalStorage', "
        "'Runtime', 'Startup' or 'Contents'.",
        "<Sites />",
    ),
    Case(
        "second-block",
        DEF,
        '    <Runtime executionContext="limited">',
        '    <Runtime />\n    <Runtime executionContext="limited">',
        "WorkerRole 'Worker' has a second <Runtime> element; it may appear only once.",
        '<Runtime executionContext="limited">',
    ),
    Case(
        "task-without-command",
        DEF,
        '<Task commandLine="python prep.py" ',
        "<Task ",
        "Startup Task 1 of role 'Web' lacks the required attribute 'commandLine'.",
        "<Task ",
    ),
    Case(
        "bad-boolean",
        DEF,
        'setReadyOnProcessStart="true"',
        'setReadyOnProcessStart="yes"',
        "ProgramEntryPoint of role 'Worker' has setReadyOnProcessStart 'yes'; expected 'true' "
        "or 'false'.",
        "<ProgramEntryPoint",
    ),
    Case(
        "bad-execution-context",
        DEF,
        'executionContext="elevated"',
        'executionContext="admin"',
        "Startup Task 1 of role 'Web' has executionContext 'admin'; expected 'limited' or "
        "'elevated'.",
        "<Task ",
    ),
    Case(
        "bad-task-type",
        DEF,
        'taskType="simple"',
        'taskType="sometimes"',
        "Startup Task 1 of role 'Web' has taskType 'sometimes'; expected 'simple', 'background' "
        "or 'foreground'.",
        "<Task ",
    ),
    Case(
        "bad-internal-protocol",
        DEF,
        '<InternalEndpoint name="Rpc" protocol="tcp">',
        '<InternalEndpoint name="Rpc" protocol="ftp">',
        "InternalEndpoint 'Rpc' of role 'Worker' has protocol 'ftp'; expected 'http', 'https', "
        "'tcp', 'udp' or 'any'.",
        '<InternalEndpoint name="Rpc"',
    ),
    Case(
        "input-protocol-any",
        DEF,
        'protocol="https" port="443"',
        'protocol="any" port="443"',
        "InputEndpoint 'HttpsIn' of role 'Web' has protocol 'any'; input endpoints use 'http', "
        "'https', 'tcp' or 'udp'.",
        'name="HttpsIn"',
        count=2,
    ),
    Case(
        "port-not-a-number",
        DEF,
        'port="443"',
        'port="https"',
        "InputEndpoint 'HttpsIn' of role 'Web' has port 'https'; expected a whole number.",
        'name="HttpsIn"',
        count=2,
    ),
    Case(
        "variable-value-and-xpath",
        DEF,
        '<Variable name="ID">',
        '<Variable name="ID" value="x">',
        "Variable 'ID' of role 'Worker' has both a value and a <RoleInstanceValue>; use one.",
        '<Variable name="ID"',
    ),
    Case(
        "variable-without-value",
        DEF,
        '<Variable name="ID">\n          <RoleInstanceValue xpath="/RoleEnvironment/'
        'CurrentInstance/@id" />\n        </Variable>',
        '<Variable name="ID" />',
        "Variable 'ID' of role 'Worker' has neither a value nor a <RoleInstanceValue xpath=...>.",
        '<Variable name="ID"',
    ),
    Case(
        "cscfg-setting-without-value",
        CFG,
        '<Setting name="QueueName" value="jobs" />',
        '<Setting name="QueueName" />',
        "Setting 'QueueName' of Role 'Worker' lacks the required attribute 'value'.",
        '<Setting name="QueueName"',
        count=2,
    ),
    Case(
        "cscfg-unknown-element",
        CFG,
        '    <Instances count="2" />\n    <ConfigurationSettings>\n      <Setting name="Greeting"',
        '    <Instances count="2" />\n    <Instance count="2" />\n    <ConfigurationSettings>\n'
        '      <Setting name="Greeting"',
        "Role 'Web' has unknown element <Instance>; did you mean <Instances>?",
        "<Instance count",
    ),
    Case(
        "cscfg-count-not-number",
        CFG,
        '<Instances count="2" />\n    <ConfigurationSettings>\n      <Setting name="QueueName"',
        '<Instances count="two" />\n    <ConfigurationSettings>\n      <Setting name="QueueName"',
        "Instances of Role 'Worker' has count 'two'; expected a whole number.",
        '<Instances count="two"',
        count=2,
    ),
    Case(
        "acl-bad-action",
        CFG,
        'action="permit"',
        'action="allow"',
        "Rule of AccessControl 'Office' has action 'allow'; expected 'permit' or 'deny'.",
        "<Rule ",
    ),
    # --- semantics: the definition --------------------------------------------------------
    Case(
        "port-zero",
        DEF,
        'port="80" loadBalancerProbe',
        'port="0" loadBalancerProbe',
        "InputEndpoint 'HttpIn' of role 'Web' has port 0; ports are 1-65535.",
        'name="HttpIn"',
    ),
    Case(
        "port-too-big",
        DEF,
        'port="443"',
        'port="70000"',
        "InputEndpoint 'HttpsIn' of role 'Web' has port 70000; ports are 1-65535.",
        'name="HttpsIn"',
    ),
    Case(
        "https-without-certificate",
        DEF,
        ' certificate="Ssl"',
        "",
        "InputEndpoint 'HttpsIn' of role 'Web' is https but names no certificate; add "
        'certificate="..." naming a <Certificate> of the role.',
        'name="HttpsIn"',
    ),
    Case(
        "certificate-not-declared",
        DEF,
        'certificate="Ssl"',
        'certificate="Tls"',
        "InputEndpoint 'HttpsIn' of role 'Web' names certificate 'Tls', which the role does not "
        "declare in <Certificates>; declare it there.",
        'name="HttpsIn"',
    ),
    Case(
        "probe-not-defined",
        DEF,
        'loadBalancerProbe="Health"',
        'loadBalancerProbe="Helth"',
        "InputEndpoint 'HttpIn' of role 'Web' names loadBalancerProbe 'Helth', which is not "
        "defined in <LoadBalancerProbes>; did you mean 'Health'?",
        'name="HttpIn"',
    ),
    Case(
        "http-probe-without-path",
        DEF,
        ' path="/health"',
        "",
        "LoadBalancerProbe 'Health' is an http probe without a path; add path=\"/health\" or "
        "similar.",
        "<LoadBalancerProbe ",
    ),
    Case(
        "tcp-probe-with-path",
        DEF,
        'protocol="http" path="/health"',
        'protocol="tcp" path="/health"',
        "LoadBalancerProbe 'Health' is a tcp probe with path '/health'; tcp probes take no path.",
        "<LoadBalancerProbe ",
    ),
    Case(
        "probe-interval",
        DEF,
        'intervalInSeconds="15"',
        'intervalInSeconds="4"',
        "LoadBalancerProbe 'Health' has intervalInSeconds 4; the minimum is 5.",
        "<LoadBalancerProbe ",
    ),
    Case(
        "probe-timeout",
        DEF,
        'timeoutInSeconds="31"',
        'timeoutInSeconds="10"',
        "LoadBalancerProbe 'Health' has timeoutInSeconds 10; the minimum is 11.",
        "<LoadBalancerProbe ",
    ),
    Case(
        "range-min-above-max",
        DEF,
        '<FixedPortRange min="9000" max="9010" />',
        '<FixedPortRange min="9010" max="9000" />',
        "FixedPortRange of InternalEndpoint 'Rpc' of role 'Worker' has min 9010 greater than "
        "max 9000.",
        '<FixedPortRange min="9010"',
    ),
    Case(
        "range-out-of-ports",
        DEF,
        '<FixedPortRange min="9000" max="9010" />',
        '<FixedPortRange min="9000" max="70000" />',
        "FixedPortRange of InternalEndpoint 'Rpc' of role 'Worker' is 9000-70000; ports are "
        "1-65535.",
        '<FixedPortRange min="9000"',
    ),
    Case(
        "storage-beyond-disk",
        DEF,
        'sizeInMB="100"',
        'sizeInMB="300000"',
        "Local storage of role 'Web' totals 300000 MB, more than the 229376 MB of local disk of "
        "vmsize 'Small'.",
        '<LocalStorage name="Cache"',
    ),
    Case(
        "storage-zero",
        DEF,
        'sizeInMB="100"',
        'sizeInMB="0"',
        "LocalStorage 'Cache' of role 'Web' has sizeInMB 0; the minimum is 1.",
        '<LocalStorage name="Cache"',
    ),
    Case(
        "xpath-unsupported",
        DEF,
        'xpath="/RoleEnvironment/CurrentInstance/@id"',
        "xpath=\"/RoleEnvironment/Roles/Role[@name='Web']/@count\"",
        "Variable 'ID' of Runtime of role 'Worker' uses RoleInstanceValue xpath "
        "'/RoleEnvironment/Roles/Role[@name='Web']/@count', which is not a supported form; see "
        "docs/service-model.md for the forms Azure and cumulo accept.",
        '<Variable name="ID"',
    ),
    Case(
        "xpath-typo",
        DEF,
        'xpath="/RoleEnvironment/CurrentInstance/@id"',
        'xpath="/RoleEnvironment/CurrentInstance/@Id"',
        "Variable 'ID' of Runtime of role 'Worker' uses RoleInstanceValue xpath "
        "'/RoleEnvironment/CurrentInstance/@Id', which is not a supported form; did you mean "
        "'/RoleEnvironment/CurrentInstance/@id'?",
        '<Variable name="ID"',
    ),
    Case(
        "xpath-unknown-resource",
        DEF,
        "LocalResource[@name='Cache']",
        "LocalResource[@name='Cach']",
        "Variable 'CACHE' of Startup Task 1 of role 'Web' reads local resource 'Cach', which the "
        "role does not declare.",
        '<Variable name="CACHE"',
    ),
    Case(
        "unknown-vmsize",
        DEF,
        '<WorkerRole name="Worker" vmsize="Small">',
        '<WorkerRole name="Worker" vmsize="Smal">',
        "WorkerRole 'Worker' has vmsize 'Smal', which is not a known size; did you mean 'Small'?",
        '<WorkerRole name="Worker"',
    ),
    Case(
        "upgrade-domains",
        DEF,
        'upgradeDomainCount="5"',
        'upgradeDomainCount="21"',
        "ServiceDefinition 'shop' has upgradeDomainCount 21; it must be 1-20.",
        "<ServiceDefinition",
    ),
    Case(
        "input-port-reused",
        DEF,
        '      <InternalEndpoint name="Rpc"',
        '      <InputEndpoint name="Alt" protocol="tcp" port="80" />\n'
        '      <InternalEndpoint name="Rpc"',
        "InputEndpoint 'Alt' of role 'Worker' uses port 80, already used by InputEndpoint "
        "'HttpIn' of role 'Web'; input ports must be unique across roles.",
        'name="Alt"',
    ),
    Case(
        "endpoint-name-twice",
        DEF,
        '      <InputEndpoint name="HttpsIn"',
        '      <InputEndpoint name="HttpIn" protocol="http" port="81" />\n'
        '      <InputEndpoint name="HttpsIn"',
        "Endpoint 'HttpIn' of role 'Web' is declared twice; endpoint names must be unique "
        "within a role.",
        'protocol="http" port="81"',
    ),
    Case(
        "binding-unknown-endpoint",
        DEF,
        'endpointName="HttpIn"',
        'endpointName="HttpOut"',
        "Binding 'Http' of Site 'Main' of role 'Web' names endpoint 'HttpOut', which is not an "
        "InputEndpoint of the role; did you mean 'HttpIn'?",
        '<Binding name="Http"',
    ),
    Case(
        "idle-timeout",
        DEF,
        'certificate="Ssl" />',
        'certificate="Ssl" idleTimeoutInMinutes="31" />',
        "InputEndpoint 'HttpsIn' of role 'Web' has idleTimeoutInMinutes 31; it must be 4-30.",
        'name="HttpsIn"',
    ),
    Case(
        "not-ready-on-start",
        DEF,
        'setReadyOnProcessStart="true"',
        'setReadyOnProcessStart="false"',
        "ProgramEntryPoint of role 'Worker' has setReadyOnProcessStart 'false'; Azure requires "
        "'true'.",
        "<ProgramEntryPoint",
    ),
    Case(
        "traffic-rule-unknown-role",
        DEF,
        "  <LoadBalancerProbes>",
        "  <NetworkTrafficRules>\n    <OnlyAllowTrafficTo>\n      <Destinations>\n"
        '        <RoleEndpoint endpointName="Rpc" roleName="Wroker" />\n'
        "      </Destinations>\n      <AllowAllTraffic />\n    </OnlyAllowTrafficTo>\n"
        "  </NetworkTrafficRules>\n  <LoadBalancerProbes>",
        "RoleEndpoint names role 'Wroker', which is not defined; did you mean 'Worker'?",
        '<RoleEndpoint endpointName="Rpc"',
    ),
    Case(
        "site-escapes-directory",
        DEF,
        '<Site name="Main" ',
        '<Site name="Main" physicalDirectory="..\\other" ',
        "Site 'Main' of role 'Web' has physicalDirectory '..\\other'; it must stay inside the "
        "service directory (no '..').",
        '<Site name="Main"',
    ),
    # --- semantics: configuration against definition --------------------------------------
    Case(
        "service-name-mismatch",
        CFG,
        'serviceName="shop"',
        'serviceName="shop2"',
        "ServiceConfiguration has serviceName 'shop2' but the ServiceDefinition is named "
        "'shop'; they must match.",
        "<ServiceConfiguration",
    ),
    Case(
        "role-not-configured",
        CFG,
        '  <Role name="Worker">\n    <Instances count="2" />\n    <ConfigurationSettings>\n'
        '      <Setting name="QueueName" value="jobs" />\n    </ConfigurationSettings>\n'
        "  </Role>\n",
        "",
        "WorkerRole 'Worker' has no <Role name=\"Worker\"> in ServiceConfiguration.cscfg.",
        '<WorkerRole name="Worker"',
        reported=DEF,
    ),
    Case(
        "role-not-defined",
        CFG,
        '<Role name="Worker">',
        '<Role name="Wroker">',
        "Role 'Wroker' is not defined in ServiceDefinition.csdef; did you mean 'Worker'?",
        '<Role name="Wroker">',
        count=2,
    ),
    Case(
        "instances-zero",
        CFG,
        '<Instances count="2" />\n    <ConfigurationSettings>\n      <Setting name="Greeting"',
        '<Instances count="0" />\n    <ConfigurationSettings>\n      <Setting name="Greeting"',
        "Role 'Web' has Instances count 0; the minimum is 1.",
        '<Instances count="0"',
    ),
    Case(
        "too-many-instances",
        CFG,
        '<Instances count="2" />\n    <ConfigurationSettings>\n      <Setting name="Greeting"',
        '<Instances count="49" />\n    <ConfigurationSettings>\n      <Setting name="Greeting"',
        "ServiceConfiguration asks for 51 instances; Azure allows at most 50 per deployment "
        "(see --skip-limits).",
        "<ServiceConfiguration",
    ),
    Case(
        "setting-without-value",
        CFG,
        '      <Setting name="Greeting" value="hi" />\n',
        "",
        "Role 'Web' gives no value for setting 'Greeting' declared in ServiceDefinition.csdef "
        "line 22.",
        '<Role name="Web">',
    ),
    Case(
        "setting-not-declared",
        CFG,
        '<Setting name="Greeting" value="hi" />',
        '<Setting name="Greeting" value="hi" />\n      <Setting name="Greting" value="x" />',
        "Setting 'Greting' of Role 'Web' is not declared in ServiceDefinition.csdef; did you "
        "mean 'Greeting'?",
        '<Setting name="Greting"',
    ),
    Case(
        "certificate-without-thumbprint",
        CFG,
        '    <Certificates>\n      <Certificate name="Ssl" thumbprint="0123456789ABCDEF0123456789'
        'ABCDEF01234567" thumbprintAlgorithm="sha1" />\n    </Certificates>\n',
        "",
        "Role 'Web' gives no thumbprint for certificate 'Ssl' declared in "
        "ServiceDefinition.csdef line 19.",
        '<Role name="Web">',
    ),
    Case(
        "thumbprint-not-hex",
        CFG,
        'thumbprint="0123456789ABCDEF0123456789ABCDEF01234567"',
        'thumbprint="01 23 45"',
        "Certificate 'Ssl' of Role 'Web' has thumbprint '01 23 45'; thumbprints are hexadecimal "
        "with no spaces.",
        '<Certificate name="Ssl"',
    ),
    Case(
        "instance-ports-too-few",
        DEF,
        '<FixedPortRange min="10000" max="10009" />',
        '<FixedPortRange min="10000" max="10000" />',
        "Role 'Worker' has 2 instances but InstanceInputEndpoint 'Debug' has only 1 public ports "
        "(10000-10000); each instance needs one.",
        '<Instances count="2" />\n    <ConfigurationSettings>\n      <Setting name="QueueName"',
        reported=CFG,
    ),
    Case(
        "acl-unknown",
        CFG,
        'accessControl="Office"',
        'accessControl="Ofice"',
        "EndpointAcl names accessControl 'Ofice', which is not defined in <AccessControls>.",
        "<EndpointAcl ",
    ),
    Case(
        "acl-unknown-endpoint",
        CFG,
        'endpoint="HttpIn"',
        'endpoint="Http"',
        "EndpointAcl names endpoint 'Http', which is not an InputEndpoint of role 'Web'.",
        "<EndpointAcl ",
    ),
    Case(
        "internal-lb-not-defined",
        DEF,
        'port="443" certificate="Ssl"',
        'port="443" certificate="Ssl" loadBalancer="Inside"',
        "InputEndpoint 'HttpsIn' of role 'Web' names loadBalancer 'Inside', which "
        "ServiceConfiguration.cscfg does not define in <LoadBalancers>.",
        'name="HttpsIn"',
    ),
]


def _line_of(text: str, marker: str) -> int:
    index = text.index(marker)
    return text.count("\n", 0, index) + 1


def test_corpus_is_big_enough() -> None:
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_broken_input(case: Case) -> None:
    csdef, cscfg = CSDEF, CSCFG
    if case.file == DEF:
        assert case.old in csdef, "the case must edit the base text"
        csdef = csdef.replace(case.old, case.new, 1)
    else:
        assert case.old in cscfg, "the case must edit the base text"
        cscfg = cscfg.replace(case.old, case.new, 1)
    reported = case.reported or case.file
    text = csdef if reported == DEF else cscfg
    with pytest.raises(ModelError) as info:
        service_from_bytes(csdef.encode(), cscfg.encode())
    problems = info.value.problems
    rendered = [str(p) for p in problems]
    expected = f"{reported}:{_line_of(text, case.at)}: {case.message}"
    assert expected in rendered, "\n".join(rendered)
    assert len(problems) == case.count, "\n".join(rendered)


def test_base_is_valid() -> None:
    service = service_from_bytes(CSDEF.encode(), CSCFG.encode())
    assert [r.name for r in service.definition.roles] == ["Web", "Worker"]


def test_every_problem_at_once() -> None:
    csdef = CSDEF.replace('port="80" loadBalancerProbe', 'port="0" loadBalancerProbe')
    csdef = csdef.replace('intervalInSeconds="15"', 'intervalInSeconds="1"')
    cscfg = CSCFG.replace('serviceName="shop"', 'serviceName="other"')
    with pytest.raises(ModelError) as info:
        service_from_bytes(csdef.encode(), cscfg.encode())
    files = [p.file for p in info.value.problems]
    assert len(files) == 3
    assert files == sorted(files, key=lambda f: f != DEF)  # the definition's problems come first
