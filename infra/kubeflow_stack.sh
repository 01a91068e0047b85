#!/usr/bin/env bash
# Register (idempotently) and activate the ZenML stack `graft-kubeflow`: Kubeflow orchestrator,
# S3/MinIO artifact store, container registry, image builder and a remote MLflow tracker.
# Run it from the checkout after `zenml login <your ZenML server>` (a remote server is required:
# Kubeflow pods report to it). State goes to .graft/zenml like every graft command.
#
#   KUBE_CONTEXT=my-cluster REGISTRY_URI=registry.example.com/graft \
#   S3_PATH=s3://graft-artifacts S3_ENDPOINT=http://minio.minio:9000 \
#   MLFLOW_URI=https://mlflow.example.com infra/kubeflow_stack.sh
#
# Secrets (created here from the environment, never written to files):
#   AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY   artifact store (MinIO or S3)
#   MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD   MLflow server (ZenML requires auth for remote MLflow)
set -euo pipefail

: "${KUBE_CONTEXT:?set KUBE_CONTEXT to the kubectl context of the Kubeflow cluster}"
: "${REGISTRY_URI:?set REGISTRY_URI to a container registry the cluster can pull from}"
: "${S3_PATH:?set S3_PATH, e.g. s3://graft-artifacts}"
: "${MLFLOW_URI:?set MLFLOW_URI to the remote MLflow tracking server}"
: "${AWS_ACCESS_KEY_ID:?}" "${AWS_SECRET_ACCESS_KEY:?}" "${MLFLOW_TRACKING_USERNAME:?}" "${MLFLOW_TRACKING_PASSWORD:?}"
IMAGE_BUILDER_FLAVOR="${IMAGE_BUILDER_FLAVOR:-local}"   # local (Docker on this machine) or kaniko (in-cluster)
KANIKO_NAMESPACE="${KANIKO_NAMESPACE:-zenml-kaniko}"     # kaniko only: where its build pods run; must already exist
KUBEFLOW_NAMESPACE="${KUBEFLOW_NAMESPACE:-kubeflow}"

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export ZENML_CONFIG_PATH="${ZENML_CONFIG_PATH:-${GRAFT_HOME:-$ROOT/.graft}/zenml}" ZENML_ANALYTICS_OPT_IN=false
ZENML="$ROOT/.venv/bin/zenml"

exists() { "$ZENML" "$1" describe "$2" >/dev/null 2>&1; }

"$ZENML" secret get graft-s3 >/dev/null 2>&1 || \
  "$ZENML" secret create graft-s3 --aws_access_key_id="$AWS_ACCESS_KEY_ID" --aws_secret_access_key="$AWS_SECRET_ACCESS_KEY"
"$ZENML" secret get graft-mlflow >/dev/null 2>&1 || \
  "$ZENML" secret create graft-mlflow --username="$MLFLOW_TRACKING_USERNAME" --password="$MLFLOW_TRACKING_PASSWORD"

exists orchestrator graft-kubeflow || "$ZENML" orchestrator register graft-kubeflow --flavor=kubeflow \
  --kubernetes_context="$KUBE_CONTEXT" --kubeflow_namespace="$KUBEFLOW_NAMESPACE"

S3_ARGS=(--path="$S3_PATH" --key='{{graft-s3.aws_access_key_id}}' --secret='{{graft-s3.aws_secret_access_key}}')
if [[ -n "${S3_ENDPOINT:-}" ]]; then S3_ARGS+=(--client_kwargs="{\"endpoint_url\": \"$S3_ENDPOINT\"}"); fi
exists artifact-store graft-s3 || "$ZENML" artifact-store register graft-s3 --flavor=s3 "${S3_ARGS[@]}"

exists container-registry graft-registry || "$ZENML" container-registry register graft-registry --flavor=default --uri="$REGISTRY_URI"
BUILDER_ARGS=(--flavor="$IMAGE_BUILDER_FLAVOR")
# kaniko builds in a pod on the cluster, so its flavor requires the kubectl context to start it in
if [[ "$IMAGE_BUILDER_FLAVOR" == kaniko ]]; then
  BUILDER_ARGS+=(--kubernetes_context="$KUBE_CONTEXT" --kubernetes_namespace="$KANIKO_NAMESPACE")
fi
exists image-builder graft-builder || "$ZENML" image-builder register graft-builder "${BUILDER_ARGS[@]}"
exists experiment-tracker graft-mlflow-remote || "$ZENML" experiment-tracker register graft-mlflow-remote --flavor=mlflow \
  --tracking_uri="$MLFLOW_URI" --tracking_username='{{graft-mlflow.username}}' --tracking_password='{{graft-mlflow.password}}'

exists stack graft-kubeflow || "$ZENML" stack register graft-kubeflow \
  -o graft-kubeflow -a graft-s3 -c graft-registry -i graft-builder -e graft-mlflow-remote
"$ZENML" stack set graft-kubeflow
"$ZENML" stack describe graft-kubeflow
