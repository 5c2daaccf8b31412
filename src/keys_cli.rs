//! `tracseq-ml keys …`: the key-encryption keys that seal artifacts at rest.
//!
//! Like `token`, these work on the stores directly (the data directory, or
//! the bucket `ARTIFACT_URL` names) with the keys the configuration gives,
//! and what they change is audited. They run beside a live platform:
//! processes holding a key file pick up a rotated one within
//! [`RELOAD_INTERVAL`], and the rotation waits that long before its last
//! pass, so artifacts written meanwhile under the old key are re-wrapped too.

use anyhow::{bail, Context};
use std::path::PathBuf;
use tracseq_backends::encryption::keys::{
    generate_key_line, key_file_text, write_key_file, KeySource, KEK_ENV, RELOAD_INTERVAL,
};
use tracseq_backends::encryption::maintenance::ChangeReport;
use tracseq_backends::platform::configured_artifacts;
use tracseq_core::config::Config;

#[derive(clap::Subcommand, Debug)]
pub enum KeysCommand {
    /// Write a new key file (mode 0600), or print a new key for TRACSEQ_KEK.
    Generate {
        /// The key file to create (it must not exist yet).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Count the artifacts under each key and in plain text; with --verify,
    /// read every artifact whole, which authenticates every byte.
    Status {
        #[arg(long)]
        verify: bool,
    },
    /// Put a new key first in the key file and re-wrap every data key under
    /// it (payloads are not rewritten; the old keys stay in the file).
    Rotate {
        /// Only re-wrap under the first key held (for keys in TRACSEQ_KEK,
        /// after putting a new one first there).
        #[arg(long)]
        rewrap_only: bool,
    },
    /// Seal the artifacts stored in plain text (written before encryption,
    /// or while it was disabled), each checked against its digest first.
    Migrate,
}

pub async fn keys(cfg: &Config, cmd: &KeysCommand) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Generate { out } => generate(out.as_deref()),
        KeysCommand::Status { verify } => status(cfg, *verify).await,
        KeysCommand::Rotate { rewrap_only } => rotate(cfg, *rewrap_only).await,
        KeysCommand::Migrate => {
            let store = configured_artifacts(cfg)?;
            let report = store.seal_plaintext().await?;
            audit(
                cfg,
                "keys.migrate",
                vec![format!("sealed {}", report.changed)],
            )
            .await;
            finish("sealed", &report)
        }
    }
}

fn generate(out: Option<&std::path::Path>) -> anyhow::Result<()> {
    let (id, line) = generate_key_line()?;
    match out {
        Some(path) => {
            if path.exists() {
                bail!(
                    "{} exists; a key file is never overwritten (its keys open what was sealed \
                     under them): `tracseq-ml keys rotate` adds a key to it",
                    path.display()
                );
            }
            write_key_file(path, &key_file_text(&[&line]))?;
            eprintln!(
                "wrote key {id} to {} (mode 0600); point encryption.key_file at it, and back it \
                 up apart from the artifacts",
                path.display()
            );
        }
        None => {
            eprintln!("key {id}; put it in {KEK_ENV} (it is shown this once):");
            println!("{}", line.split_whitespace().next().unwrap_or_default());
        }
    }
    Ok(())
}

async fn status(cfg: &Config, verify: bool) -> anyhow::Result<()> {
    let store = configured_artifacts(cfg)?;
    let held = match &store.encryption().keyring {
        Some(k) => {
            println!("keys from the {}", k.source());
            k.ids().iter().map(|id| id.to_string()).collect()
        }
        None => {
            println!("encryption is disabled: new artifacts are written in plain text");
            Vec::new()
        }
    };
    let report = store.key_report(verify).await?;
    for (i, id) in held.iter().enumerate() {
        let n = report.sealed_by_key.get(id).copied().unwrap_or(0);
        let role = if i == 0 { "active, " } else { "" };
        println!("  {id}  ({role}held)  {n} artifacts");
    }
    let mut missing = 0;
    for (id, n) in &report.sealed_by_key {
        if !held.contains(id) {
            missing += 1;
            println!("  {id}  (NOT HELD)  {n} artifacts: they cannot be read without this key");
        }
    }
    println!("  plain text  {} artifacts", report.plaintext);
    for p in &report.problems {
        println!("problem: {p}");
    }
    if verify && report.problems.is_empty() {
        println!("every artifact was read whole and authenticated");
    }
    if missing > 0 || !report.problems.is_empty() {
        bail!(
            "{} problems, {missing} keys not held",
            report.problems.len()
        );
    }
    Ok(())
}

async fn rotate(cfg: &Config, rewrap_only: bool) -> anyhow::Result<()> {
    let store = configured_artifacts(cfg)?;
    let Some(keyring) = store.encryption().keyring.clone() else {
        bail!("encryption is disabled: there are no keys to rotate");
    };
    let store = if rewrap_only {
        store
    } else {
        let KeySource::File(path) = keyring.source() else {
            bail!(
                "the keys come from {KEK_ENV}, which this command cannot change: put a new key \
                 (`tracseq-ml keys generate`) first in it, keep the old ones after it, restart \
                 the platform with it, then run `tracseq-ml keys rotate --rewrap-only`"
            );
        };
        let old =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let old = zeroize::Zeroizing::new(old);
        let (id, line) = generate_key_line()?;
        let mut lines: Vec<&str> = vec![&line];
        lines.extend(
            old.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#')),
        );
        write_key_file(path, &key_file_text(&lines))?;
        eprintln!(
            "added key {id} first in {}; the old keys stay after it",
            path.display()
        );
        configured_artifacts(cfg)?
    };
    let written = std::time::Instant::now();
    let active = store
        .encryption()
        .keyring
        .as_ref()
        .map(|k| k.ids()[0].to_string())
        .unwrap_or_default();
    let mut report = store.rewrap_all().await?;
    if !rewrap_only {
        // Running processes may still wrap under the old key until they
        // reread the key file: one more pass after they all have.
        if let Some(rest) =
            (RELOAD_INTERVAL + std::time::Duration::from_secs(1)).checked_sub(written.elapsed())
        {
            eprintln!(
                "waiting {} s for running processes to pick up the new key...",
                rest.as_secs()
            );
            tokio::time::sleep(rest).await;
        }
        let second = store.rewrap_all().await?;
        report = ChangeReport {
            changed: report.changed + second.changed,
            unchanged: second.unchanged.saturating_sub(report.changed),
            problems: second.problems,
        };
    }
    audit(
        cfg,
        "keys.rotate",
        vec![active.clone(), format!("rewrapped {}", report.changed)],
    )
    .await;
    println!("active key {active}");
    finish("re-wrapped", &report)
}

fn finish(verb: &str, report: &ChangeReport) -> anyhow::Result<()> {
    println!(
        "{verb} {} artifacts, {} already were",
        report.changed, report.unchanged
    );
    for p in &report.problems {
        println!("problem: {p}");
    }
    if !report.problems.is_empty() {
        bail!(
            "{} artifacts were left as they were; run the command again once they are fixed",
            report.problems.len()
        );
    }
    Ok(())
}

/// Records what the command did in the audit log (a warning when the log
/// cannot be reached: the change to the artifacts stands).
async fn audit(cfg: &Config, action: &str, targets: Vec<String>) {
    match crate::security_cli::open(cfg).await {
        Ok(store) => crate::security_cli::audit_cli(store.as_ref(), action, targets).await,
        Err(e) => eprintln!("warning: could not write the audit log: {e:#}"),
    }
}
