#!/usr/bin/env bash
# Installs (once, into ~/.cache/tracseq-ml) the validators the deploy
# targets' rendered files are checked with, none of them ours:
# kubernetes-validate (the Kubernetes OpenAPI schemas, strict: unknown
# fields refused), botocore (the AWS SDK's own SageMaker request models) and
# dockerfile (BuildKit's Dockerfile parser). Prints the Python to run
# ops/validate-deploy.py with.
set -euo pipefail
venv="$HOME/.cache/tracseq-ml/deploy-validators-1"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import kubernetes_validate, botocore, dockerfile' 2>/dev/null; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q "kubernetes-validate==1.37.0" "botocore==1.44.8" "dockerfile==3.4.0" >&2
fi
echo "$venv/bin/python"
