//! `tracseq-ml token …` and `tracseq-ml audit verify`, and the first
//! start's admin token.
//!
//! These talk to the security store directly (the SQLite file, or
//! PostgreSQL with `DATABASE_URL`), not to a running api: whoever can run
//! them can already read the database, and they are how an operator gets
//! back in after losing every admin token. What they change is audited like
//! a request, with `cli:<user>@<host>` as the client.

use anyhow::{bail, Context};
use chrono::Utc;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tracseq_core::config::Config;
use tracseq_core::ports::SecurityStore;
use tracseq_core::security::audit::{verify, ChainHead, NewAuditEntry, Outcome};
use tracseq_core::security::token::{issue, parse_lifetime, TokenRecord, TokenRequest};
use tracseq_core::security::Role;

/// Where the first start of an embedded platform leaves its admin token.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

#[derive(clap::Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a token and print its secret (shown this once, never stored).
    Create {
        #[arg(long)]
        name: String,
        /// viewer, scientist, predictor, approver or admin.
        #[arg(long)]
        role: String,
        /// Lifetime such as 30d, 12h or 45m (default: no expiry).
        #[arg(long)]
        expires: Option<String>,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by name or id; refused from the next request on.
    Revoke { token: String },
}

#[derive(clap::Subcommand, Debug)]
pub enum AuditCommand {
    /// Check the whole hash chain; names the first bad entry.
    Verify,
}

pub(crate) async fn open(cfg: &Config) -> anyhow::Result<Arc<dyn SecurityStore>> {
    tracseq_backends::platform::security_store(&cfg.data_dir, Some(&cfg.distributed))
        .await
        .context("opening the token and audit store")
}

fn cli_client() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    format!("cli:{user}@{}", host.trim())
}

pub(crate) async fn audit_cli(store: &dyn SecurityStore, action: &str, targets: Vec<String>) {
    let entry = NewAuditEntry {
        at: Utc::now(),
        actor: None,
        action: action.into(),
        targets,
        outcome: Outcome::Ok,
        status: 0,
        request_id: uuid::Uuid::now_v7().to_string(),
        client: Some(cli_client()),
        detail: Some("command line".into()),
    };
    if let Err(e) = store.append_audit(entry).await {
        eprintln!("warning: could not write the audit log: {e}");
    }
}

pub async fn token(cfg: &Config, cmd: &TokenCommand) -> anyhow::Result<()> {
    let store = open(cfg).await?;
    match cmd {
        TokenCommand::Create {
            name,
            role,
            expires,
        } => {
            let req = TokenRequest {
                name: name.clone(),
                role: role.parse()?,
                expires_in: expires.as_deref().map(parse_lifetime).transpose()?,
                created_by: "cli".into(),
            };
            let issued = issue(req, Utc::now())?;
            store.insert_token(&issued.record).await?;
            audit_cli(
                store.as_ref(),
                "tokens.create",
                vec![issued.record.id.to_string(), issued.record.name.clone()],
            )
            .await;
            eprintln!(
                "created token '{}' ({}, role {}{}); its secret is shown once:",
                issued.record.name,
                issued.record.id,
                issued.record.role,
                issued
                    .record
                    .expires_at
                    .map(|t| format!(", expires {t}"))
                    .unwrap_or_default()
            );
            println!("{}", issued.secret.expose());
        }
        TokenCommand::List => {
            let now = Utc::now();
            println!(
                "{:<36}  {:<24}  {:<10}  {:<8}  expires",
                "id", "name", "role", "state"
            );
            for t in store.list_tokens().await? {
                let v = t.public_view(now);
                println!(
                    "{:<36}  {:<24}  {:<10}  {:<8}  {}",
                    t.id,
                    t.name,
                    t.role,
                    v["state"].as_str().unwrap_or("?"),
                    t.expires_at
                        .map(|e| e.to_rfc3339())
                        .unwrap_or_else(|| "never".into())
                );
            }
        }
        TokenCommand::Revoke { token } => {
            let tokens = store.list_tokens().await?;
            let found: Vec<&TokenRecord> = tokens
                .iter()
                .filter(|t| {
                    t.id.to_string() == *token || (t.name == *token && t.revoked_at.is_none())
                })
                .collect();
            let t = match found.as_slice() {
                [t] => *t,
                [] => bail!("no active token is named or numbered '{token}'"),
                _ => bail!("'{token}' names several tokens; revoke by id"),
            };
            let revoked = store.revoke_token(t.id, Utc::now()).await?;
            audit_cli(
                store.as_ref(),
                "tokens.revoke",
                vec![revoked.id.to_string(), revoked.name.clone()],
            )
            .await;
            println!(
                "revoked token '{}' ({}); api replicas refuse it within api.token_cache_ms ({} ms)",
                revoked.name, revoked.id, cfg.api.token_cache_ms
            );
        }
    }
    Ok(())
}

pub async fn audit(cfg: &Config, cmd: &AuditCommand) -> anyhow::Result<()> {
    let AuditCommand::Verify = cmd;
    let store = open(cfg).await?;
    let mut head = ChainHead::default();
    loop {
        let page = store.audit_chain(head.seq, 1_000).await?;
        if page.is_empty() {
            break;
        }
        if let Err(broken) = verify(&mut head, &page) {
            bail!(
                "the audit log is broken at entry {}: {} ({} entries before it verified)",
                broken.seq,
                broken.reason,
                head.seq
            );
        }
    }
    println!(
        "audit log verified: {} entries, the last one's hash is {}",
        head.seq, head.hash
    );
    Ok(())
}

/// On an embedded platform's first start (no tokens at all), creates the
/// admin token and writes it to `<data_dir>/admin.token`, readable by its
/// owner only. Returns the file when it holds a token now.
pub async fn ensure_admin_token(
    store: &dyn SecurityStore,
    data_dir: &Path,
) -> anyhow::Result<Option<PathBuf>> {
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    if !store.list_tokens().await?.is_empty() {
        return Ok(path.exists().then_some(path));
    }
    let issued = issue(
        TokenRequest {
            name: "admin".into(),
            role: Role::Admin,
            expires_in: None,
            created_by: "first start".into(),
        },
        Utc::now(),
    )?;
    write_private(&path, issued.secret.expose())
        .with_context(|| format!("writing {}", path.display()))?;
    store.insert_token(&issued.record).await?;
    audit_cli(
        store,
        "tokens.create",
        vec![issued.record.id.to_string(), issued.record.name.clone()],
    )
    .await;
    eprintln!(
        "created the admin API token; it is in {} (mode 0600)",
        path.display()
    );
    Ok(Some(path))
}

/// Writes `secret` to a new file only its owner can read.
fn write_private(path: &Path, secret: &str) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    #[cfg(unix)]
    {
        // An existing file keeps its mode through `open`; set it anyway.
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    writeln!(f, "{secret}")?;
    f.sync_all()
}

/// The admin token of an embedded data directory, for `demo`.
pub fn read_admin_token(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {} (create a token with `tracseq-ml token create --name demo --role scientist` and put it there)",
            path.display()
        )
    })?;
    Ok(text.trim().to_string())
}
