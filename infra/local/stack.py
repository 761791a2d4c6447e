"""Creates the local AWS stack in moto FROM template.yaml, the way CloudFormation would in AWS.

    .venv/bin/python infra/local/stack.py transform          # only writes .local/template.json (used by lint.sh)
    .venv/bin/python infra/local/stack.py [create] [STACK]   # default stack name: manifold-local

`create` transforms the SAM template offline (samtranslator), uploads a dummy zip that stands in for every
function's code, creates the stack in moto through the CloudFormation API, waits for CREATE_COMPLETE and
writes `.local/stack.env` (`export NAME=value` lines: table names, queue and DLQ URLs, the bus name) from the
created stack's physical resources. Re-running reuses a stack created from the same template and parameters,
and replaces one created from another version.

The moto copy of the template (`.local/template.moto.json`) differs from the real one only where moto cannot
follow it, and every difference is printed:
- resource types moto's CloudFormation does not implement (alarms, queue policies, the HTTP API...) are left
  out, with everything that references them;
- SQS event source mappings are created disabled: moto would otherwise "invoke" the dummy code in Docker on
  every SendMessage, while the local stack runs the handlers in-process and polls the queues itself.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import os
import re
import sys
import time
import warnings
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
STATE = ROOT / ".local"
TEMPLATE = ROOT / "template.yaml"
TRANSFORMED = STATE / "template.json"
MOTO_TEMPLATE = STATE / "template.moto.json"
STACK_ENV = STATE / "stack.env"
REGION = "us-east-1"
CODE_BUCKET = "manifold-local-code"
CODE_KEY = "bootstrap.zip"
CREATE_TIMEOUT_S = 120

# Environment variable -> the logical id of the resource whose physical id (table name, queue URL) it holds.
TABLE_ENV = {
    "RECORDS_TABLE": "RecordsTable",
    "IDEMPOTENCY_TABLE": "IdempotencyTable",
    "LEDGER_TABLE": "LedgerTable",
    "STATE_TABLE": "StateTable",
    "QUARANTINE_TABLE": "QuarantineTable",
}
# One push queue per channel, as the template (generated from Channel::ALL) declares them.
CHANNELS = re.findall(r"^  Push([A-Z][a-z]+)Queue:$", TEMPLATE.read_text(), re.M)
QUEUE_ENV = {
    "INGEST_QUEUE_URL": "IngestQueue",
    "AMAZON_NOTIFICATIONS_QUEUE_URL": "AmazonNotificationsQueue",
    "LEDGER_QUEUE_URL": "LedgerQueue",
    "SYNC_QUEUE_URL": "SyncQueue",
    "CHANGES_QUEUE_URL": "ChangesQueue",
    "DELIVERIES_QUEUE_URL": "DeliveriesQueue",
    "CUSTOMERS_QUEUE_URL": "CustomersQueue",
    "CRM_QUEUE_URL": "CrmQueue",
    **{f"PUSH_QUEUE_{c.upper()}": f"Push{c}Queue" for c in CHANNELS},
}


def log(message: str) -> None:
    print(f"stack: {message}", file=sys.stderr, flush=True)


def screaming_snake(logical_id: str) -> str:
    """`PushShopifyDLQ` -> `PUSH_SHOPIFY_DLQ`."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", logical_id).upper()


# ---------------------------------------------------------------------------------------------- transform


def transform() -> dict[str, Any]:
    """template.yaml -> plain CloudFormation, offline; writes `.local/template.json`."""
    from samtranslator.translator.transform import transform as sam_transform
    from samtranslator.yaml_helper import yaml_parse

    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)  # the translator derives the partition from it
    sam = yaml_parse(TEMPLATE.read_text())
    # What `sam package` does: code moves to S3. Here every function points at the same dummy artifact.
    for resource in sam.get("Resources", {}).values():
        if resource.get("Type") == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = f"s3://{CODE_BUCKET}/{CODE_KEY}"

    class OfflinePolicies:
        """SAM asks IAM for managed policy ARNs only for policies named without an ARN; the template names none."""

        def load(self) -> dict[str, str]:
            return {}

    cfn = sam_transform(sam, {}, OfflinePolicies())
    STATE.mkdir(exist_ok=True)
    TRANSFORMED.write_text(json.dumps(cfn, indent=1, sort_keys=True) + "\n")
    log(f"wrote {TRANSFORMED.relative_to(ROOT)} ({len(cfn['Resources'])} resources)")
    return cfn


# ---------------------------------------------------------------------------------------------- moto copy


def references(node: Any) -> set[str]:
    """Logical ids a template fragment points at (Ref, Fn::GetAtt, Fn::Sub variables)."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add(value)
            elif key == "Fn::GetAtt":
                target = value[0] if isinstance(value, list) else str(value).split(".")[0]
                found.add(target)
            elif key == "Fn::Sub":
                text = value[0] if isinstance(value, list) else value
                found.update(v.split(".")[0] for v in re.findall(r"\$\{([^!}][^}]*)\}", text))
                if isinstance(value, list):
                    found.update(references(value[1]))
            else:
                found.update(references(value))
    elif isinstance(node, list):
        for item in node:
            found.update(references(item))
    return found


def for_moto(cfn: dict[str, Any]) -> dict[str, Any]:
    """The transformed template minus what moto's CloudFormation cannot create; prints each difference."""
    logging.getLogger("moto").setLevel(logging.ERROR)  # its own notes would repeat ours below
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from moto.cloudformation.parsing import resource_class_from_type

    template = json.loads(json.dumps(cfn))
    resources: dict[str, Any] = template["Resources"]
    dropped: dict[str, str] = {
        lid: f"{res['Type']} is not implemented by moto's CloudFormation"
        for lid, res in resources.items()
        if resource_class_from_type(res["Type"]) is None
    }
    changed = True
    while changed:  # anything that points at a dropped resource cannot be created either
        changed = False
        for lid, res in resources.items():
            if lid in dropped:
                continue
            depends = res.get("DependsOn", [])
            depends = [depends] if isinstance(depends, str) else depends
            gone = sorted((references(res) | set(depends)) & dropped.keys())
            if gone:
                dropped[lid] = f"references {', '.join(gone)}"
                changed = True
    for lid in sorted(dropped):
        log(f"local stack skips {lid}: {dropped[lid]}")
        del resources[lid]
    for name in [o for o, out in template.get("Outputs", {}).items() if references(out) & dropped.keys()]:
        del template["Outputs"][name]

    for lid, res in sorted(resources.items()):
        if res["Type"] == "AWS::Lambda::EventSourceMapping":
            res["Properties"]["Enabled"] = False
            log(f"local stack disables {lid}: handlers run in-process, not in moto's Docker")
    return template


# ---------------------------------------------------------------------------------------------- moto


def session():
    import boto3

    return boto3.session.Session(
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
        region_name=REGION,
    )


def client(name: str):
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    return session().client(name, endpoint_url=endpoint, region_name=REGION)


def upload_dummy_code() -> None:
    """A zip holding a `bootstrap` that is never run: moto only needs the object to exist."""
    s3 = client("s3")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("bootstrap", "#!/bin/sh\necho 'local stack placeholder: handlers run in-process' >&2\nexit 1\n")
    try:
        s3.create_bucket(Bucket=CODE_BUCKET)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    s3.put_object(Bucket=CODE_BUCKET, Key=CODE_KEY, Body=buffer.getvalue())


def stack_status(cfn_client, name: str) -> dict[str, Any] | None:
    try:
        return cfn_client.describe_stacks(StackName=name)["Stacks"][0]
    except cfn_client.exceptions.ClientError as error:
        if "does not exist" in str(error):
            return None
        raise


def wait_for(cfn_client, name: str, done: set[str]) -> dict[str, Any] | None:
    deadline = time.monotonic() + CREATE_TIMEOUT_S
    while True:
        stack = stack_status(cfn_client, name)
        if stack is None or stack["StackStatus"] in done or not stack["StackStatus"].endswith("IN_PROGRESS"):
            return stack
        if time.monotonic() > deadline:
            sys.exit(f"stack: {name} still {stack['StackStatus']} after {CREATE_TIMEOUT_S} s")
        time.sleep(0.2)


def failed_resources(cfn_client, name: str) -> list[str]:
    events = cfn_client.describe_stack_events(StackName=name)["StackEvents"]
    return [
        f"{e['LogicalResourceId']} ({e['ResourceType']}): {e.get('ResourceStatusReason', 'no reason given')}"
        for e in events
        if e["ResourceStatus"].endswith("FAILED")
    ]


def create(name: str) -> None:
    stage = name.removeprefix("manifold-") or "local"
    template = for_moto(transform())
    body = json.dumps(template, sort_keys=True)
    MOTO_TEMPLATE.write_text(json.dumps(template, indent=1, sort_keys=True) + "\n")
    parameters = [{"ParameterKey": "Stage", "ParameterValue": stage}]
    fingerprint = hashlib.sha256((body + json.dumps(parameters)).encode()).hexdigest()

    cfn_client = client("cloudformation")
    existing = stack_status(cfn_client, name)
    if existing is not None:
        tags = {t["Key"]: t["Value"] for t in existing.get("Tags", [])}
        if existing["StackStatus"] == "CREATE_COMPLETE" and tags.get("manifold:fingerprint") == fingerprint:
            log(f"reusing {name}: created from this very template")
            write_env(cfn_client, name)
            return
        log(f"replacing {name} ({existing['StackStatus']}, other template or parameters)")
        cfn_client.delete_stack(StackName=name)
        wait_for(cfn_client, name, {"DELETE_COMPLETE"})

    upload_dummy_code()
    started = time.monotonic()
    cfn_client.create_stack(
        StackName=name,
        TemplateBody=body,
        Parameters=parameters,
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
        Tags=[{"Key": "manifold:fingerprint", "Value": fingerprint}],
    )
    stack = wait_for(cfn_client, name, {"CREATE_COMPLETE"})
    status = stack["StackStatus"] if stack else "GONE"
    if status != "CREATE_COMPLETE":
        for failure in failed_resources(cfn_client, name):
            log(f"FAILED {failure}")
        sys.exit(f"stack: {name} ended {status}: {stack.get('StackStatusReason', '') if stack else ''}")
    log(f"{name} CREATE_COMPLETE in {time.monotonic() - started:.1f} s")
    apply_table_settings(cfn_client, name, template)
    write_env(cfn_client, name)


def apply_table_settings(cfn_client, name: str, template: dict[str, Any]) -> None:
    """TTL and point-in-time recovery, which moto's CloudFormation ignores, set through the DynamoDB API."""
    ddb = client("dynamodb")
    for resource in cfn_client.describe_stack_resources(StackName=name)["StackResources"]:
        if resource["ResourceType"] != "AWS::DynamoDB::Table":
            continue
        table = resource["PhysicalResourceId"]
        properties = template["Resources"][resource["LogicalResourceId"]]["Properties"]
        ttl = properties.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            ddb.update_time_to_live(
                TableName=table, TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True}
            )
        if properties.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled"):
            ddb.update_continuous_backups(
                TableName=table, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
            )


def write_env(cfn_client, name: str) -> None:
    """`.local/stack.env` from the stack's physical resources, so every process sees the same names."""
    physical = {
        r["LogicalResourceId"]: r["PhysicalResourceId"]
        for r in cfn_client.describe_stack_resources(StackName=name)["StackResources"]
        if r.get("PhysicalResourceId")
    }
    outputs = {
        o["OutputKey"]: o["OutputValue"] for o in cfn_client.describe_stacks(StackName=name)["Stacks"][0].get("Outputs", [])
    }
    dlqs = {f"{screaming_snake(lid)}_URL": lid for lid in physical if lid.endswith("DLQ")}
    wanted = {**TABLE_ENV, **QUEUE_ENV, **dict(sorted(dlqs.items()))}
    missing = sorted(lid for lid in wanted.values() if lid not in physical)
    if missing or "BusName" not in outputs:
        sys.exit(f"stack: {name} lacks {', '.join(missing) or 'the BusName output'}")

    env = {
        "MANIFOLD_STACK": name,
        "AWS_ENDPOINT_URL": os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
        "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
        **{var: physical[lid] for var, lid in wanted.items()},
        "EVENT_BUS_NAME": outputs["BusName"],
        "ALARM_TOPIC_ARN": outputs.get("AlarmTopicArn", ""),
        "CONFIG_BUCKET": physical.get("ConfigBucket", ""),
        "EXPORT_BUCKET": physical.get("ExportBucket", ""),
        "CONFIG_KEY": "channels.toml",
        "METRICS_NAMESPACE": "Manifold",
    }
    STACK_ENV.write_text("".join(f"export {key}='{value}'\n" for key, value in env.items()))
    log(f"wrote {STACK_ENV.relative_to(ROOT)} ({len(env)} variables)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", default="create", choices=["create", "transform"])
    parser.add_argument("stack", nargs="?", default=os.environ.get("MANIFOLD_STACK", "manifold-local"))
    args = parser.parse_args()
    if args.command == "transform":
        transform()
    else:
        create(args.stack)


if __name__ == "__main__":
    main()
