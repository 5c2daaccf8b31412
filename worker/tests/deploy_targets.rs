//! The deploy targets' rendered files, checked by validators no one here
//! wrote (ops/validate-deploy.py: the Kubernetes OpenAPI schemas, strict;
//! botocore's SageMaker request models; BuildKit's Dockerfile parser), for
//! CPU and GPU models, odd model names and a missing SageMaker role.

use std::path::Path;
use std::process::Command;
use tracseq_core::ids::DeploymentId;
use tracseq_core::lifecycle::deployment::Target;
use tracseq_core::protocol::DeployPayload;
use tracseq_core::resources::ResourceRequest;
use tracseq_worker::deploy::{renderer, Context};

fn payload(model: &str, target: Target, gpus: f64, role: Option<&str>) -> DeployPayload {
    DeployPayload {
        deployment_id: DeploymentId::new(),
        model: model.into(),
        version: 7,
        family: if gpus > 0.0 { "nn" } else { "xgboost" }.into(),
        target,
        artifact_path: format!("models/{model}/7/model.json"),
        sha256: "ab".repeat(32),
        replicas: 2,
        resources: Some(ResourceRequest {
            cpus: 1.5,
            memory_mb: 3072,
            gpus,
            gpu_memory_mb: if gpus > 0.0 { 8000 } else { 0 },
        }),
        base_image: "ghcr.io/lab/tracseq-ml:0.1.0".into(),
        registry: Some("registry.lab.example:5000/ml".into()),
        sagemaker_role_arn: role.map(str::to_string),
    }
}

/// Renders every case into `dir/<case>/`, as the artifact store lays it out.
fn render_all(dir: &Path) -> Vec<(String, Option<String>)> {
    let mut notes = Vec::new();
    let cases = [
        (
            "cpu",
            "sample-quality",
            0.0,
            Some("arn:aws:iam::123456789012:role/SageMakerServe"),
        ),
        ("gpu", "sample-quality", 2.0, None),
        ("share", "Sample_Quality.v2", 0.25, None),
    ];
    for (case, model, gpus, role) in cases {
        for target in [Target::Docker, Target::Kubernetes, Target::Sagemaker] {
            let p = payload(model, target, gpus, role);
            let rendered = renderer(target)
                .expect("rendered targets have a renderer")
                .render(&Context {
                    payload: &p,
                    model_bytes: b"{\"model\": \"bytes\"}",
                })
                .unwrap();
            for file in rendered.files {
                let path = dir.join(case).join(target.as_str()).join(&file.name);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, file.bytes).unwrap();
            }
            notes.push((format!("{case}/{target}"), rendered.note));
        }
    }
    notes
}

#[test]
fn the_platform_target_renders_nothing() {
    assert!(renderer(Target::Platform).is_none());
}

#[test]
fn every_rendered_target_says_it_was_not_applied() {
    let dir = tempdir();
    for (case, note) in render_all(&dir) {
        let note = note.unwrap_or_else(|| panic!("{case}: no note"));
        assert!(note.starts_with("rendered, not applied"), "{case}: {note}");
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn gpu_models_get_whole_gpu_limits_and_a_gpu_node_selector() {
    let dir = tempdir();
    render_all(&dir);
    let gpu = std::fs::read_to_string(dir.join("gpu/kubernetes/kubernetes.yaml")).unwrap();
    assert!(gpu.contains("\"nvidia.com/gpu\": \"2\""), "{gpu}");
    assert!(gpu.contains("\"nvidia.com/gpu.present\": \"true\""));
    let share = std::fs::read_to_string(dir.join("share/kubernetes/kubernetes.yaml")).unwrap();
    assert!(
        share.contains("\"nvidia.com/gpu\": \"1\""),
        "a share needs a whole device"
    );
    let cpu = std::fs::read_to_string(dir.join("cpu/kubernetes/kubernetes.yaml")).unwrap();
    assert!(!cpu.contains("nvidia.com/gpu"));
    assert!(cpu.contains("\"cpu\": \"1500m\"") && cpu.contains("\"memory\": \"3072Mi\""));
    let role =
        std::fs::read_to_string(dir.join("gpu/sagemaker/sagemaker/create-model.json")).unwrap();
    assert!(role.contains("set-deploy.sagemaker_role_arn"), "{role}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn rendered_files_pass_the_kubernetes_sagemaker_and_dockerfile_validators() {
    let python = match Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../ops/deploy-validators.sh"
        ))
        .output()
    {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        other => {
            let why = format!("ops/deploy-validators.sh failed: {other:?}");
            if std::env::var_os("CI").is_some() {
                panic!("{why}");
            }
            eprintln!("skipping: {why}");
            return;
        }
    };
    let dir = tempdir();
    render_all(&dir);
    let out = Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../ops/validate-deploy.py"
        ))
        .arg(&dir)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "validators refused:\n{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 3 cases x (Dockerfile + kubernetes.yaml + 3 SageMaker bodies).
    assert_eq!(
        report.lines().filter(|l| l.starts_with("ok ")).count(),
        15,
        "{report}"
    );
    std::fs::remove_dir_all(dir).ok();
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tracseq-deploy-{}", DeploymentId::new()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
