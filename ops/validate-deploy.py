"""Validates a deploy job's rendered files with tools no one here wrote.

Usage: validate-deploy.py DIR   (run with the Python ops/deploy-validators.sh prints)

DIR holds what one or more deployments rendered, laid out as in the
artifact store (any of kubernetes.yaml, sagemaker/*.json, context/Dockerfile,
at any depth). Checks:
- kubernetes.yaml: every document against the Kubernetes OpenAPI schemas of
  the oldest and newest supported releases, strictly (an unknown field fails);
- sagemaker/<op>.json: the request body against botocore's SageMaker
  service model for that operation (required members, types, patterns as
  botocore checks them);
- context/Dockerfile: parsed by BuildKit's parser; FROM first, exec-form
  ENTRYPOINT, and the COPY source present in the build context.
Prints one line per file; exits 1 if any file fails, 2 if none was found.
"""

import json
import pathlib
import sys

import botocore.session
import botocore.validate
import dockerfile
import kubernetes_validate
import yaml

KUBERNETES_VERSIONS = ["1.30.0", "1.37.0"]
SAGEMAKER_OPERATIONS = {
    "create-model.json": "CreateModel",
    "create-endpoint-config.json": "CreateEndpointConfig",
    "create-endpoint.json": "CreateEndpoint",
}


def check_kubernetes(path):
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    kinds = sorted(d.get("kind", "?") for d in docs)
    for version in KUBERNETES_VERSIONS:
        for doc in docs:
            kubernetes_validate.validate(doc, version, strict=True)
    return f"{len(docs)} documents ({', '.join(kinds)}) valid for Kubernetes {', '.join(KUBERNETES_VERSIONS)}"


def check_sagemaker(path, model):
    operation = SAGEMAKER_OPERATIONS[path.name]
    body = json.loads(path.read_text())
    shape = model.operation_model(operation).input_shape
    report = botocore.validate.ParamValidator().validate(body, shape)
    if report.has_errors():
        raise ValueError(report.generate_report())
    return f"valid {operation} request"


def check_dockerfile(path):
    commands = dockerfile.parse_string(path.read_text())
    names = [c.cmd.upper() for c in commands]
    if not names or names[0] != "FROM":
        raise ValueError(f"the first instruction is {names[:1]}, not FROM")
    entry = [c for c in commands if c.cmd.upper() == "ENTRYPOINT"]
    if len(entry) != 1 or not entry[0].json:
        raise ValueError("expected one exec-form (JSON) ENTRYPOINT")
    for c in commands:
        if c.cmd.upper() == "COPY":
            source = path.parent / c.value[0]
            if not source.is_file():
                raise ValueError(f"COPY source {c.value[0]} is not in the build context")
    return f"{len(commands)} instructions, entrypoint {list(entry[0].value)[:2]}"


def main():
    root = pathlib.Path(sys.argv[1])
    sagemaker = botocore.session.get_session().get_service_model("sagemaker")
    checked = failed = 0
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        try:
            if path.name == "kubernetes.yaml":
                verdict = check_kubernetes(path)
            elif path.parent.name == "sagemaker" and path.name in SAGEMAKER_OPERATIONS:
                verdict = check_sagemaker(path, sagemaker)
            elif path.name == "Dockerfile":
                verdict = check_dockerfile(path)
            else:
                continue
            print(f"ok   {path.relative_to(root)}: {verdict}")
        except Exception as e:  # every validator's own error type, reported as a failure
            failed += 1
            print(f"FAIL {path.relative_to(root)}: {e}")
        checked += 1
    if checked == 0:
        print(f"no rendered files under {root}")
        sys.exit(2)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
