//! What a deploy job produces for each target: the files that put one
//! model version into service somewhere.
//!
//! The platform target needs no files (every api replica loads the version
//! itself once the deployment is live). Docker, Kubernetes and SageMaker
//! get real, valid artifacts — a Dockerfile with its build context,
//! manifests, request bodies — rendered into the artifact store under
//! `deployments/<id>/`. Applying them needs credentials this platform does
//! not hold (a registry to push to, a cluster, an AWS account), so every
//! rendered deployment says so in its note. Each target is one
//! [`Renderer`]; an applier that holds credentials would take a
//! [`Rendered`] and apply it, without touching the renderers.

mod docker;
mod kubernetes;
mod sagemaker;

use tracseq_core::lifecycle::deployment::Target;
use tracseq_core::protocol::DeployPayload;
use tracseq_core::resources::ResourceRequest;
use tracseq_core::Result;

/// The port the serving image listens on (SageMaker's fixed contract).
pub const SERVING_PORT: u16 = 8080;

/// One rendered file: its path inside the deployment's folder and bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct RenderedFile {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// Everything a target needs, rendered.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Rendered {
    pub files: Vec<RenderedFile>,
    /// What was not done and what the operator must do.
    pub note: Option<String>,
}

/// What a renderer knows of the version it deploys.
pub struct Context<'a> {
    pub payload: &'a DeployPayload,
    /// The model artifact as stored (already checked against its digest).
    pub model_bytes: &'a [u8],
}

impl Context<'_> {
    /// The serving resources, with one CPU when none were asked for.
    pub fn resources(&self) -> ResourceRequest {
        self.payload.resources.clone().unwrap_or_default()
    }

    /// The name used for this version's image, Kubernetes objects and
    /// SageMaker resources: lowercase letters, digits and `-`, at most 63
    /// characters (Kubernetes' DNS label). A model name that had to change
    /// to fit gets a short digest of the original, so two names that
    /// sanitise alike stay apart.
    pub fn resource_name(&self) -> String {
        resource_name(&self.payload.model, self.payload.version)
    }

    /// The serving image's reference: `[<registry>/]<name>:v<version>`.
    pub fn image(&self) -> String {
        let repo = base_name(&self.payload.model);
        let tag = format!("{repo}:v{}", self.payload.version);
        match self.payload.registry.as_deref() {
            Some(registry) => format!("{}/{tag}", registry.trim_end_matches('/')),
            None => tag,
        }
    }
}

/// `tracseq-<model>` in lowercase letters, digits and `-`; a name that
/// had to change gets 6 hex digits of its digest.
fn base_name(model: &str) -> String {
    let mut clean: String = model
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    while clean.contains("--") {
        clean = clean.replace("--", "-");
    }
    let clean = clean.trim_matches('-');
    if clean == model {
        format!("tracseq-{clean}")
    } else {
        let digest = tracseq_core::digest::sha256_hex(model.as_bytes());
        format!("tracseq-{clean}-{}", &digest[..6]).replace("--", "-")
    }
}

pub(crate) fn resource_name(model: &str, version: u32) -> String {
    let suffix = format!("-v{version}");
    let mut base = base_name(model);
    base.truncate(63 - suffix.len());
    format!("{}{suffix}", base.trim_end_matches('-'))
}

/// Renders a target's files.
pub trait Renderer: Send + Sync {
    fn target(&self) -> Target;
    fn render(&self, ctx: &Context<'_>) -> Result<Rendered>;
}

/// The renderer of `target`; `None` for the platform, which needs no files.
pub fn renderer(target: Target) -> Option<Box<dyn Renderer>> {
    match target {
        Target::Platform => None,
        Target::Docker => Some(Box::new(docker::Docker)),
        Target::Kubernetes => Some(Box::new(kubernetes::Kubernetes)),
        Target::Sagemaker => Some(Box::new(sagemaker::Sagemaker)),
    }
}

/// The note every rendered target carries: nothing was applied.
fn not_applied(target: Target, how: &str) -> String {
    format!("rendered, not applied: this platform holds no credentials for {target}; {how}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_names_are_dns_labels_that_keep_different_models_apart() {
        assert_eq!(
            resource_name("sample-quality", 3),
            "tracseq-sample-quality-v3"
        );
        let a = resource_name("Sample_Quality", 3);
        let b = resource_name("sample.quality", 3);
        assert_ne!(a, b);
        assert!(a.starts_with("tracseq-sample-quality-"), "{a}");
        let long = resource_name(&"x".repeat(100), 4_000_000_000);
        assert!(long.len() <= 63, "{long}");
        assert!(long.ends_with("-v4000000000"));
        for name in [a, b, long, resource_name("-_-", 1)] {
            assert!(name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
            assert!(!name.starts_with('-') && !name.ends_with('-'), "{name}");
        }
    }
}
