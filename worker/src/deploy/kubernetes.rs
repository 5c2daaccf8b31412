//! The Kubernetes target: a Deployment of the serving image (the Docker
//! target's), a Service in front of it and a HorizontalPodAutoscaler
//! (autoscaling/v2) from the requested replicas up to four times as many.
//! A model that asks for GPUs gets whole `nvidia.com/gpu` limits (the
//! device plugin cannot share a device) and a node selector for GPU nodes.
//! One multi-document YAML file; each document is written as JSON, which is
//! YAML, so nothing here needs a YAML writer.

use super::{not_applied, Context, Rendered, RenderedFile, Renderer, SERVING_PORT};
use serde_json::{json, Value};
use tracseq_core::lifecycle::deployment::Target;
use tracseq_core::Result;

pub struct Kubernetes;

/// How far the autoscaler may scale out, as a multiple of the replicas asked for.
const MAX_SCALE: u32 = 4;
/// Average CPU use the autoscaler holds.
const TARGET_CPU_PERCENT: u32 = 70;

impl Renderer for Kubernetes {
    fn target(&self) -> Target {
        Target::Kubernetes
    }

    fn render(&self, ctx: &Context<'_>) -> Result<Rendered> {
        let docs = manifests(ctx);
        let mut text = String::new();
        for doc in &docs {
            text.push_str("---\n");
            text.push_str(&serde_json::to_string_pretty(doc)?);
            text.push('\n');
        }
        Ok(Rendered {
            files: vec![RenderedFile {
                name: "kubernetes.yaml".into(),
                bytes: text.into_bytes(),
            }],
            note: Some(not_applied(
                Target::Kubernetes,
                &format!(
                    "push the Docker target's image as {} and run `kubectl apply -f kubernetes.yaml`",
                    ctx.image()
                ),
            )),
        })
    }
}

/// The Deployment, Service and HorizontalPodAutoscaler.
pub(super) fn manifests(ctx: &Context<'_>) -> Vec<Value> {
    let p = ctx.payload;
    let name = ctx.resource_name();
    let r = ctx.resources();
    let labels = json!({
        "app.kubernetes.io/name": "tracseq-serve",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/version": format!("v{}", p.version),
        "app.kubernetes.io/managed-by": "tracseq-ml",
    });
    let selector = json!({"app.kubernetes.io/instance": name});
    let mut requests = json!({"cpu": cpu_quantity(r.cpus)});
    let mut limits = json!({});
    if r.memory_mb > 0 {
        requests["memory"] = json!(format!("{}Mi", r.memory_mb));
        limits["memory"] = json!(format!("{}Mi", r.memory_mb));
    }
    let gpus = r.gpus.ceil() as u64;
    if gpus > 0 {
        limits["nvidia.com/gpu"] = json!(gpus.to_string());
        requests["nvidia.com/gpu"] = json!(gpus.to_string());
    }
    let probe = |path: &str, delay: u32| json!({"httpGet": {"path": path, "port": "http"}, "initialDelaySeconds": delay, "periodSeconds": 10});
    let mut pod_spec = json!({
        "containers": [{
            "name": "serve",
            "image": ctx.image(),
            "ports": [{"name": "http", "containerPort": SERVING_PORT, "protocol": "TCP"}],
            "resources": {"requests": requests, "limits": limits},
            "readinessProbe": probe("/ping", 2),
            "livenessProbe": probe("/ping", 10),
            "securityContext": {
                "runAsNonRoot": true,
                "allowPrivilegeEscalation": false,
                "readOnlyRootFilesystem": true,
                "capabilities": {"drop": ["ALL"]}
            }
        }]
    });
    if gpus > 0 {
        pod_spec["nodeSelector"] = json!({"nvidia.com/gpu.present": "true"});
        pod_spec["tolerations"] = json!([{
            "key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"
        }]);
    }
    let annotations = json!({
        "tracseq.ml/model": p.model,
        "tracseq.ml/version": p.version.to_string(),
        "tracseq.ml/sha256": p.sha256,
        "tracseq.ml/deployment": p.deployment_id.to_string(),
    });
    let replicas = p.replicas.max(1);
    vec![
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": labels, "annotations": annotations},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": selector},
                "template": {"metadata": {"labels": labels}, "spec": pod_spec}
            }
        }),
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "type": "ClusterIP",
                "selector": selector,
                "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
            }
        }),
        json!({
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "minReplicas": replicas,
                "maxReplicas": replicas.saturating_mul(MAX_SCALE),
                "metrics": [{
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": TARGET_CPU_PERCENT}}
                }]
            }
        }),
    ]
}

/// CPUs as a Kubernetes quantity: whole numbers as they are, fractions in
/// millicores.
fn cpu_quantity(cpus: f64) -> String {
    let milli = (cpus.max(0.001) * 1000.0).round() as u64;
    if milli.is_multiple_of(1000) {
        (milli / 1000).to_string()
    } else {
        format!("{milli}m")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_quantities_are_whole_cores_or_millicores() {
        assert_eq!(cpu_quantity(1.0), "1");
        assert_eq!(cpu_quantity(4.0), "4");
        assert_eq!(cpu_quantity(0.5), "500m");
        assert_eq!(cpu_quantity(1.25), "1250m");
        assert_eq!(cpu_quantity(0.0), "1m");
    }
}
