//! The SageMaker target: the request bodies of CreateModel,
//! CreateEndpointConfig and CreateEndpoint for a real-time endpoint that
//! runs the Docker target's serving image. The image answers SageMaker's
//! container contract (`GET /ping`, `POST /invocations` on port 8080), so
//! the model is baked into it and no `ModelDataUrl` is needed.
//!
//! The execution role comes from `deploy.sagemaker_role_arn`; without it
//! the bodies carry a role ARN that names the missing setting, and the note
//! says it must be set before they are sent.

use super::{not_applied, Context, Rendered, RenderedFile, Renderer};
use serde_json::{json, Value};
use tracseq_core::lifecycle::deployment::Target;
use tracseq_core::Result;

pub struct Sagemaker;

/// Shown in place of an execution role that was not configured: a
/// well-formed ARN (so the bodies stay valid) that no account has.
pub const UNSET_ROLE: &str = "arn:aws:iam::000000000000:role/set-deploy.sagemaker_role_arn";

impl Renderer for Sagemaker {
    fn target(&self) -> Target {
        Target::Sagemaker
    }

    fn render(&self, ctx: &Context<'_>) -> Result<Rendered> {
        let [model, config, endpoint] = bodies(ctx);
        let file = |name: &str, body: &Value| -> Result<RenderedFile> {
            Ok(RenderedFile {
                name: name.into(),
                bytes: serde_json::to_vec_pretty(body)?,
            })
        };
        let mut how = "push the Docker target's image to ECR and send the three bodies in order \
                       (aws sagemaker create-model --cli-input-json file://create-model.json, then \
                       create-endpoint-config, then create-endpoint)"
            .to_string();
        if ctx.payload.sagemaker_role_arn.is_none() {
            how.push_str("; set deploy.sagemaker_role_arn first: ExecutionRoleArn is a stand-in");
        }
        Ok(Rendered {
            files: vec![
                file("sagemaker/create-model.json", &model)?,
                file("sagemaker/create-endpoint-config.json", &config)?,
                file("sagemaker/create-endpoint.json", &endpoint)?,
            ],
            note: Some(not_applied(Target::Sagemaker, &how)),
        })
    }
}

/// CreateModel, CreateEndpointConfig and CreateEndpoint, in order.
pub(super) fn bodies(ctx: &Context<'_>) -> [Value; 3] {
    let p = ctx.payload;
    let name = ctx.resource_name();
    let role = p.sagemaker_role_arn.as_deref().unwrap_or(UNSET_ROLE);
    let tags = json!([
        {"Key": "tracseq:model", "Value": p.model},
        {"Key": "tracseq:version", "Value": p.version.to_string()},
        {"Key": "tracseq:sha256", "Value": p.sha256},
        {"Key": "tracseq:deployment", "Value": p.deployment_id.to_string()},
    ]);
    let model = json!({
        "ModelName": name,
        "PrimaryContainer": {
            "Image": ctx.image(),
            "Mode": "SingleModel",
            "Environment": {"TRACSEQ_MODEL_SHA256": p.sha256}
        },
        "ExecutionRoleArn": role,
        "Tags": tags,
    });
    let config = json!({
        "EndpointConfigName": name,
        "ProductionVariants": [{
            "VariantName": "primary",
            "ModelName": name,
            "InitialInstanceCount": p.replicas.max(1),
            "InstanceType": instance_type(ctx),
            "InitialVariantWeight": 1.0
        }],
        "Tags": tags,
    });
    let endpoint = json!({
        "EndpointName": name,
        "EndpointConfigName": name,
        "Tags": tags,
    });
    [model, config, endpoint]
}

/// The smallest instance type that holds the requested resources.
fn instance_type(ctx: &Context<'_>) -> &'static str {
    let r = ctx.resources();
    let memory_gb = r.memory_mb.div_ceil(1024);
    if r.gpus > 0.0 {
        return if r.gpus > 1.0 {
            "ml.g5.12xlarge"
        } else {
            "ml.g5.xlarge"
        };
    }
    match (r.cpus, memory_gb) {
        (c, m) if c <= 2.0 && m <= 8 => "ml.m5.large",
        (c, m) if c <= 4.0 && m <= 16 => "ml.m5.xlarge",
        (c, m) if c <= 8.0 && m <= 32 => "ml.m5.2xlarge",
        _ => "ml.m5.4xlarge",
    }
}
