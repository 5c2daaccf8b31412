//! The Docker target: a build context for a serving image of one model
//! version — the model artifact and a Dockerfile that puts it in the
//! platform's image and starts `tracseq-ml serve` on it, which checks the
//! artifact's digest before it answers anything.

use super::{not_applied, Context, Rendered, RenderedFile, Renderer, SERVING_PORT};
use tracseq_core::lifecycle::deployment::Target;
use tracseq_core::Result;

pub struct Docker;

/// Where the model lives inside the image.
const MODEL_PATH: &str = "/srv/tracseq/model.json";

impl Renderer for Docker {
    fn target(&self) -> Target {
        Target::Docker
    }

    fn render(&self, ctx: &Context<'_>) -> Result<Rendered> {
        Ok(Rendered {
            files: vec![
                RenderedFile {
                    name: "context/Dockerfile".into(),
                    bytes: dockerfile(ctx).into_bytes(),
                },
                RenderedFile {
                    name: "context/model.json".into(),
                    bytes: ctx.model_bytes.to_vec(),
                },
            ],
            note: Some(not_applied(
                Target::Docker,
                &format!(
                    "download deployments/<id>/context/ and run `docker build -t {} .` in it, then push",
                    ctx.image()
                ),
            )),
        })
    }
}

/// The Dockerfile: JSON-form (exec) instructions only, so no shell parses
/// a model name, and labels that say which version the image serves.
pub(super) fn dockerfile(ctx: &Context<'_>) -> String {
    let p = ctx.payload;
    let json = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    let entrypoint = [
        "tracseq-ml",
        "serve",
        "--model-file",
        MODEL_PATH,
        "--sha256",
        &p.sha256,
        "--name",
        &p.model,
        "--version",
        &p.version.to_string(),
        "--host",
        "0.0.0.0",
        "--port",
        &SERVING_PORT.to_string(),
    ]
    .iter()
    .map(|a| json(a))
    .collect::<Vec<_>>()
    .join(", ");
    format!(
        "# Serving image of model {model} version {version} ({family}), rendered by TracSeq ML\n\
         # for deployment {deployment}. Build: docker build -t {image} .\n\
         FROM {base}\n\
         LABEL org.opencontainers.image.title={title} \\\n      \
               ml.tracseq.model={model_json} \\\n      \
               ml.tracseq.version=\"{version}\" \\\n      \
               ml.tracseq.sha256=\"{sha}\" \\\n      \
               ml.tracseq.deployment=\"{deployment}\"\n\
         COPY model.json {MODEL_PATH}\n\
         # A numeric user, so Kubernetes' runAsNonRoot can verify it.\n\
         USER 65532:65532\n\
         EXPOSE {SERVING_PORT}\n\
         ENTRYPOINT [{entrypoint}]\n",
        model = p.model,
        model_json = json(&p.model),
        title = json(&ctx.resource_name()),
        version = p.version,
        family = p.family,
        deployment = p.deployment_id,
        image = ctx.image(),
        base = p.base_image,
        sha = p.sha256,
    )
}
