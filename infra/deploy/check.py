"""Checks the arm64 artifacts `infra/deploy/build.sh` built, and the template that points at them.

    .venv/bin/python infra/deploy/check.py BINARY...

For each binary: target/lambda/<binary>/bootstrap exists, is an ELF64 executable for aarch64 (e_machine 183),
and its size against the 4 MB goal. Then writes `.local/template.artifacts.yaml` (template.yaml with every
function's CodeUri pointing at its artifact folder, as `sam deploy` would package it), runs the offline SAM
transform over it, and writes the figures to `.local/deploy-build.json`. Exits non-zero when an artifact is
missing or not aarch64, or when the transform refuses the template.
"""

from __future__ import annotations

import json
import os
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STATE = ROOT / ".local"
GOAL_BYTES = 4 * 1024 * 1024
# cargo's target directory (CARGO_TARGET_DIR, relative to the repository when relative).
TARGET = ROOT / os.environ.get("CARGO_TARGET_DIR", "target")
EM_AARCH64 = 183


def elf_machine(path: Path) -> int | None:
    """The ELF header's e_machine, or None when the file is not a little-endian ELF64."""
    head = path.read_bytes()[:20]
    if len(head) < 20 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
        return None
    return struct.unpack_from("<H", head, 18)[0]


def main() -> int:
    binaries = sys.argv[1:]
    if not binaries:
        print("usage: check.py BINARY...", file=sys.stderr)
        return 2
    rows, failures = [], []
    for name in binaries:
        artifact = TARGET / "lambda" / name / "bootstrap"
        if not artifact.is_file():
            failures.append(f"{name}: {artifact} is missing")
            continue
        machine = elf_machine(artifact)
        size = artifact.stat().st_size
        if machine != EM_AARCH64:
            failures.append(f"{name}: bootstrap is not an aarch64 ELF (e_machine {machine})")
        rows.append({"binary": name, "bytes": size, "aarch64": machine == EM_AARCH64, "under_goal": size < GOAL_BYTES})

    from samtranslator.translator.transform import transform
    from samtranslator.yaml_helper import yaml_parse
    import yaml

    template = yaml_parse((ROOT / "template.yaml").read_text())
    for resource in template["Resources"].values():
        if resource.get("Type") == "AWS::Serverless::Function":
            binary = resource["Metadata"]["BuildProperties"]["Binary"]
            resource["Properties"]["CodeUri"] = str(TARGET / "lambda" / binary) + "/"
    STATE.mkdir(exist_ok=True)
    (STATE / "template.artifacts.yaml").write_text(yaml.safe_dump(template, sort_keys=False))

    class OfflinePolicies:
        def load(self) -> dict[str, str]:
            return {}

    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    packaged = json.loads(json.dumps(template))
    for resource in packaged["Resources"].values():  # what `sam package` does: code moves to S3
        if resource.get("Type") == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://artifacts/" + Path(resource["Properties"]["CodeUri"]).name + ".zip"
    try:
        transform(packaged, {}, OfflinePolicies())
    except Exception as error:  # the translator raises its own exception types
        failures.append(f"the offline SAM transform refused the template: {error}")

    seconds = None
    marker = STATE / "deploy-build.seconds"
    if marker.exists():
        seconds = int(marker.read_text().split("=", 1)[1])
    report = {"build_seconds": seconds, "goal_bytes": GOAL_BYTES, "artifacts": rows, "failures": failures}
    (STATE / "deploy-build.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"{'BINARY':<24}{'SIZE':>12}  AARCH64  UNDER 4 MB")
    for r in rows:
        print(f"{r['binary']:<24}{r['bytes'] / 1048576:>10.2f} MB  {'yes' if r['aarch64'] else 'NO':<7}  {'yes' if r['under_goal'] else 'no'}")
    if seconds is not None:
        print(f"one workspace release build: {seconds} s")
    for f in failures:
        print(f"FAILED {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
