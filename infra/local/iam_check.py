"""Evaluates recorded AWS calls against each function's own role, with a real IAM policy evaluator.

    .venv/bin/python infra/local/iam_check.py < request.json > answer.json

The IAM test (tests/it/iam.rs) runs every function's handlers through a recording proxy in front of moto and
sends the calls it saw here. moto does not enforce IAM the way AWS does (it checks DynamoDB calls against
resource `*`), so this script does what AWS would: it reads each function's role from the transformed
template (`.local/template.json`, what CloudFormation receives), resolves the intrinsics (Ref, Fn::GetAtt,
Fn::Sub, Fn::Join) to the local stack's physical names and ARNs (moto's CloudFormation API), and asks moto's
policy evaluator (`moto.iam.access_control.IAMPolicy`, used as a library) whether each call is allowed.

Request (JSON on stdin):
    {"stack": "manifold-test", "template": ".local/template.json",
     "calls": [{"function": "IngestFunction", "action": "events:PutEvents", "resource": "arn:..."}],
     "remove": [{"function": "IngestFunction", "action": "events:PutEvents"}]}   # optional: drop a grant

Answer (JSON on stdout):
    {"decisions": [{...call, "allowed": true}],
     "policies": {"IngestFunction": [{"name": "...", "document": {...resolved...}}]},
     "managed": {"IngestFunction": ["arn:aws:iam::aws:policy/..."]}}

Only the role's inline policies (the template's `Policies`) are evaluated; the AWS managed policies SAM
attaches for the Lambda service itself (logs, X-Ray, the SQS event source poller) are listed, not evaluated:
the handlers never call those APIs, the Lambda service does.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
REGION = os.environ.get("AWS_REGION", "us-east-1")


class Unresolvable(Exception):
    """An intrinsic this resolver does not know, or a resource the stack does not have."""


class Stack:
    """The local stack's physical names, and the intrinsics of a policy resolved against them."""

    def __init__(self, template: dict[str, Any], name: str) -> None:
        import boto3

        cfn = boto3.client(
            "cloudformation", region_name=REGION, endpoint_url=os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
        )
        described = cfn.describe_stacks(StackName=name)["Stacks"][0]
        # arn:aws:cloudformation:REGION:ACCOUNT:stack/NAME/ID
        _, self.partition, _, self.region, self.account, _ = described["StackId"].split(":", 5)
        self.outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
        self.parameters = {p["ParameterKey"]: p["ParameterValue"] for p in described.get("Parameters", [])}
        self.physical = {
            r["LogicalResourceId"]: r.get("PhysicalResourceId")
            for r in cfn.describe_stack_resources(StackName=name)["StackResources"]
        }
        self.template = template

    def kind(self, logical: str) -> str:
        resource = self.template["Resources"].get(logical)
        if resource is None:
            raise Unresolvable(f"the template has no resource {logical}")
        return resource["Type"]

    def ref(self, logical: str) -> str:
        pseudo = {
            "AWS::Partition": self.partition,
            "AWS::Region": self.region,
            "AWS::AccountId": self.account,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": self.outputs.get("StackName", ""),
        }
        if logical in pseudo:
            return pseudo[logical]
        if logical in self.template.get("Parameters", {}):
            default = self.template["Parameters"][logical].get("Default")
            return str(self.parameters.get(logical, default))
        if self.kind(logical) == "AWS::Events::EventBus":
            return self.bus_name(logical)
        physical = self.physical.get(logical)
        if not physical:
            raise Unresolvable(f"the stack has no physical id for {logical}")
        return physical

    def bus_name(self, logical: str) -> str:
        # moto keeps no physical id for a bus; its Name is in the stack's outputs (and is its Ref).
        for key, value in self.outputs.items():
            out = self.template.get("Outputs", {}).get(key, {}).get("Value")
            if out in ({"Fn::GetAtt": [logical, "Name"]}, {"Ref": logical}):
                return value
        raise Unresolvable(f"no stack output names the bus {logical}")

    def get_att(self, logical: str, attribute: str) -> str:
        kind = self.kind(logical)
        p, r, a = self.partition, self.region, self.account
        if kind == "AWS::SQS::Queue":
            url = self.ref(logical)
            name = url.rstrip("/").rsplit("/", 1)[-1]
            owner = url.rstrip("/").rsplit("/", 2)[-2]
            return {"Arn": f"arn:{p}:sqs:{r}:{owner}:{name}", "QueueName": name, "QueueUrl": url}[attribute]
        if kind == "AWS::DynamoDB::Table" and attribute == "Arn":
            return f"arn:{p}:dynamodb:{r}:{a}:table/{self.ref(logical)}"
        if kind == "AWS::Events::EventBus":
            name = self.bus_name(logical)
            return {"Name": name, "Arn": f"arn:{p}:events:{r}:{a}:event-bus/{name}"}[attribute]
        if kind == "AWS::S3::Bucket" and attribute == "Arn":
            return f"arn:{p}:s3:::{self.ref(logical)}"
        raise Unresolvable(f"Fn::GetAtt {logical}.{attribute} ({kind})")

    def sub(self, text: str, variables: dict[str, Any]) -> str:
        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return self.resolve(variables[name])
            if "." in name:
                logical, attribute = name.split(".", 1)
                return self.get_att(logical, attribute)
            return self.ref(name)

        return re.sub(r"\$\{([^}]+)\}", one, text)

    def resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self.resolve(n) for n in node]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, value), = node.items()
            if key == "Ref":
                return self.ref(value)
            if key == "Fn::GetAtt":
                logical, attribute = value if isinstance(value, list) else value.split(".", 1)
                return self.get_att(logical, attribute)
            if key == "Fn::Sub":
                text, variables = (value[0], value[1]) if isinstance(value, list) else (value, {})
                return self.sub(text, variables)
            if key == "Fn::Join":
                separator, parts = value
                return separator.join(str(self.resolve(p)) for p in self.resolve(parts))
            if key.startswith("Fn::") or key == "Condition":
                raise Unresolvable(f"intrinsic {key} in a policy")
        return {k: self.resolve(v) for k, v in node.items()}


def roles(template: dict[str, Any]) -> dict[str, str]:
    """Function logical id -> its role's logical id."""
    out = {}
    for logical, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        role = resource["Properties"].get("Role", {})
        if isinstance(role, dict) and "Fn::GetAtt" in role:
            out[logical] = role["Fn::GetAtt"][0]
    return out


def without(document: dict[str, Any], action: str) -> dict[str, Any]:
    """The document with `action` taken out of every statement (a statement left with none is dropped)."""
    statements = document["Statement"] if isinstance(document["Statement"], list) else [document["Statement"]]
    kept = []
    for statement in statements:
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        remaining = [a for a in actions if a.lower() != action.lower()]
        if remaining:
            kept.append({**statement, "Action": remaining})
    return {**document, "Statement": kept}


def main() -> None:
    logging.getLogger("moto").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from moto.iam.access_control import IAMPolicy, PermissionResult

    request = json.load(sys.stdin)
    template = json.loads((ROOT / request.get("template", ".local/template.json")).read_text())
    stack = Stack(template, request["stack"])
    removed: dict[str, list[str]] = {}
    for r in request.get("remove", []):
        removed.setdefault(r["function"], []).append(r["action"])

    policies: dict[str, list[dict[str, Any]]] = {}
    managed: dict[str, list[str]] = {}
    for function, role in roles(template).items():
        properties = template["Resources"][role]["Properties"]
        managed[function] = [str(stack.resolve(m)) for m in properties.get("ManagedPolicyArns", [])]
        documents = []
        for policy in properties.get("Policies", []):
            document = stack.resolve(policy["PolicyDocument"])
            for action in removed.get(function, []):
                document = without(document, action)
            documents.append({"name": policy["PolicyName"], "document": document})
        policies[function] = documents

    decisions = []
    for call in request["calls"]:
        documents = policies.get(call["function"])
        if documents is None:
            raise SystemExit(f"iam_check: the template has no function {call['function']} with a role")
        results = [
            IAMPolicy(json.dumps(d["document"])).is_action_permitted(call["action"], call["resource"]) for d in documents
        ]
        allowed = PermissionResult.PERMITTED in results and PermissionResult.DENIED not in results
        decisions.append({**call, "allowed": allowed})

    json.dump({"decisions": decisions, "policies": policies, "managed": managed}, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
