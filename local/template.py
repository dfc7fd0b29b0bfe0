"""Read template.yaml and make its resources on moto, so tests and the local stack match the deployment."""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """YAML loader that keeps CloudFormation short-form tags as {"Fn": value} dicts."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _tag)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass


@dataclass(frozen=True)
class Route:
    function: str
    method: str
    path: str  # /settings/{profile}

    @property
    def pattern(self) -> re.Pattern[str]:
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.path))
        return re.compile(f"^{regex}$")


@dataclass(frozen=True)
class QueueSource:
    """An SQS event source of a function: Lambda polls `queue` and invokes `function` with batches."""

    function: str
    queue: str  # logical id
    batch_size: int
    report_failures: bool  # FunctionResponseTypes: [ReportBatchItemFailures]
    max_receive_count: int | None  # the queue's redrive policy; None without a dead-letter queue
    dead_letter_queue: str | None  # logical id


def _logical_of(value: Any) -> str:
    """The logical id behind !GetAtt X.Arn or !Ref X."""
    if isinstance(value, dict) and len(value) == 1:
        ((key, arg),) = value.items()
        if key == "Fn::GetAtt":
            return str(arg[0] if isinstance(arg, list) else arg.split(".", 1)[0])
        if key == "Ref":
            return str(arg)
    raise ValueError(f"expected !GetAtt <queue>.Arn or !Ref <queue>, not {value!r}")


@dataclass
class LocalNames:
    """Physical names given to the template's resources on this machine."""

    stack_name: str = "local"
    region: str = "us-east-1"
    account_id: str = "123456789012"
    physical: dict[str, str] = field(default_factory=dict)
    parameters: dict[str, str] = field(default_factory=dict)
    queues: set[str] = field(default_factory=set)

    def ref(self, logical_id: str) -> str:
        if logical_id in self.parameters:
            return self.parameters[logical_id]
        pseudo = {
            "AWS::StackName": self.stack_name,
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        }
        return pseudo.get(logical_id) or self.physical.get(logical_id) or f"{self.stack_name}-{logical_id}"

    def resolve(self, value: Any) -> Any:
        if isinstance(value, dict) and len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::Sub":
                text = arg if isinstance(arg, str) else arg[0]
                return re.sub(r"\$\{([\w:]+)\}", lambda m: self.ref(m.group(1)), text)
            if key == "Fn::GetAtt":
                logical, attribute = arg
                return self.attribute(logical, attribute)
            if key == "Fn::Join":
                delimiter, items = arg
                resolved = self.resolve(items)  # a CommaDelimitedList parameter resolves to its text
                return resolved if isinstance(resolved, str) else delimiter.join(str(i) for i in resolved)
        if isinstance(value, dict):
            return {k: self.resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        return value

    def queue_name(self, logical_id: str) -> str:
        return f"{self.stack_name}-{logical_id}"

    def attribute(self, logical_id: str, attribute: str) -> str:
        if attribute == "QueueName":
            return self.queue_name(logical_id)
        if attribute == "Arn" and logical_id in self.queues:
            return f"arn:aws:sqs:{self.region}:{self.account_id}:{self.queue_name(logical_id)}"
        name = self.ref(logical_id)
        if attribute == "Arn":
            return f"arn:aws:dynamodb:{self.region}:{self.account_id}:table/{name}"
        return name


class Template:
    def __init__(self, path: Path = TEMPLATE, names: LocalNames | None = None) -> None:
        self.body = load_template(path)
        self.resources: dict[str, dict[str, Any]] = self.body["Resources"]
        self.names = names or LocalNames()
        for logical in self.of_type("AWS::SQS::Queue"):
            self.names.queues.add(logical)
            url = f"https://sqs.{self.names.region}.amazonaws.com/{self.names.account_id}/"
            self.names.physical.setdefault(logical, url + self.names.queue_name(logical))
        for logical in self.of_type("AWS::S3::Bucket"):
            self.names.physical.setdefault(logical, f"{self.names.stack_name}-{logical}".lower())
        for logical, spec in {
            **self.of_type("AWS::SecretsManager::Secret"),
            **self.of_type("AWS::SES::ConfigurationSet"),
        }.items():
            name = spec.get("Properties", {}).get("Name")
            if name is not None:
                self.names.physical.setdefault(logical, str(self.names.resolve(name)))
        for logical, spec in self.body.get("Parameters", {}).items():
            default = spec.get("Default")
            if default is not None:
                self.names.parameters.setdefault(logical, str(default))

    def of_type(self, kind: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.resources.items() if v["Type"] == kind}

    def functions(self) -> dict[str, dict[str, Any]]:
        return self.of_type("AWS::Serverless::Function")

    def routes(self) -> list[Route]:
        found = []
        for logical, spec in self.functions().items():
            for event in (spec["Properties"].get("Events") or {}).values():
                if event["Type"] == "HttpApi":
                    props = event["Properties"]
                    found.append(Route(logical, props["Method"].upper(), props["Path"]))
        return found

    def queue_sources(self) -> list[QueueSource]:
        """The functions' SQS event sources, with the redrive policy of their queue."""
        found = []
        for logical, spec in self.functions().items():
            for event in (spec["Properties"].get("Events") or {}).values():
                if event["Type"] != "SQS":
                    continue
                props = event["Properties"]
                responses = props.get("FunctionResponseTypes") or ()
                queue = _logical_of(props["Queue"])
                redrive = self.resources[queue].get("Properties", {}).get("RedrivePolicy") or {}
                found.append(
                    QueueSource(
                        function=logical,
                        queue=queue,
                        batch_size=int(props.get("BatchSize") or 10),
                        report_failures="ReportBatchItemFailures" in responses,
                        max_receive_count=int(redrive["maxReceiveCount"]) if redrive else None,
                        dead_letter_queue=_logical_of(redrive["deadLetterTargetArn"]) if redrive else None,
                    )
                )
        return found

    def function_environment(self, logical_id: str) -> dict[str, str]:
        """Globals' variables, then the function's own, resolved to this machine's names."""
        glob = self.body.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
        own = self.functions()[logical_id]["Properties"].get("Environment", {}).get("Variables", {})
        return {k: str(self.names.resolve(v)) for k, v in {**glob, **own}.items()}

    def handler_path(self, logical_id: str) -> tuple[Path, str]:
        props = self.functions()[logical_id]["Properties"]
        module, _, func = props["Handler"].rpartition(".")
        return ROOT / props["CodeUri"] / f"{module}.py", func

    def create_tables(self, dynamodb: Any) -> dict[str, str]:
        """Create every DynamoDB table of the template; returns logical id -> table name."""
        made = {}
        for logical, spec in self.of_type("AWS::DynamoDB::Table").items():
            props = spec["Properties"]
            name = self.names.ref(logical)
            request: dict[str, Any] = {
                "TableName": name,
                "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
                "AttributeDefinitions": props["AttributeDefinitions"],
                "KeySchema": props["KeySchema"],
            }
            if props.get("GlobalSecondaryIndexes"):
                request["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
            dynamodb.create_table(**request)
            ttl = props.get("TimeToLiveSpecification")
            if ttl:
                dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
            made[logical] = name
        return made

    def create_queues(self, sqs: Any) -> dict[str, str]:
        """Queues with their visibility timeout and redrive policy; dead-letter queues first."""
        made = {}
        queues = self.of_type("AWS::SQS::Queue")
        for logical in sorted(queues, key=lambda q: "RedrivePolicy" in queues[q].get("Properties", {})):
            props = self.names.resolve(queues[logical].get("Properties", {}))
            attributes = {}
            if "VisibilityTimeout" in props:
                attributes["VisibilityTimeout"] = str(props["VisibilityTimeout"])
            if "RedrivePolicy" in props:
                attributes["RedrivePolicy"] = json.dumps(props["RedrivePolicy"])
            name = self.names.queue_name(logical)
            made[logical] = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        return made

    def create_buckets(self, s3: Any) -> dict[str, str]:
        """Every bucket of the template, keeping versions when the template's bucket does."""
        made = {}
        for logical, spec in self.of_type("AWS::S3::Bucket").items():
            name = self.names.ref(logical)
            s3.create_bucket(Bucket=name)
            versioning = (spec.get("Properties") or {}).get("VersioningConfiguration")
            if versioning:
                status = {"Status": versioning["Status"]}
                s3.put_bucket_versioning(Bucket=name, VersioningConfiguration=status)
            made[logical] = name
        return made

    def create_generated_secrets(self, secretsmanager: Any) -> dict[str, str]:
        """The secrets whose value the deployment generates (GenerateSecretString), with a random one."""
        made = {}
        for logical, spec in self.of_type("AWS::SecretsManager::Secret").items():
            props = spec.get("Properties", {})
            if "GenerateSecretString" not in props:
                continue
            name = self.names.ref(logical)
            secretsmanager.create_secret(Name=name, SecretString=secrets.token_urlsafe(48))
            made[logical] = name
        return made

    def create_configuration_sets(self, sesv2: Any) -> list[str]:
        """The SES configuration sets, so that SES sends naming the stack's are accepted."""
        made = []
        for logical, spec in self.of_type("AWS::SES::ConfigurationSet").items():
            name = str(self.names.resolve(spec.get("Properties", {}).get("Name") or logical))
            self.names.physical.setdefault(logical, name)
            sesv2.create_configuration_set(ConfigurationSetName=name)
            made.append(name)
        return made

    def create_all(self, session: Any) -> None:
        self.create_configuration_sets(session.client("sesv2"))
        self.create_generated_secrets(session.client("secretsmanager"))
        self.create_tables(session.client("dynamodb"))
        self.create_queues(session.client("sqs"))
        self.create_buckets(session.client("s3"))
