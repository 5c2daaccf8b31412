//! Pages of listings in SQL: the cursor is a key of the listing's order
//! (ids are UUIDv7 text, so id order is creation order), so each page is
//! one indexed range scan with a `LIMIT`.

use super::*;
use tracseq_core::paging::Page;

impl SqliteStateStore {
    pub(super) async fn experiments_page(&self, page: &Page) -> Result<Vec<Experiment>> {
        let rows = sqlx::query(
            "SELECT body FROM experiments WHERE (?1 IS NULL OR id < ?1) ORDER BY id DESC LIMIT ?2",
        )
        .bind(page.after.as_deref())
        .bind(page.sql_limit())
        .fetch_all(&self.reader)
        .await
        .classify()?;
        bodies(&rows)
    }

    pub(super) async fn datasets_page(&self, page: &Page) -> Result<Vec<DatasetRecord>> {
        let rows = sqlx::query(
            "SELECT body FROM datasets WHERE (?1 IS NULL OR id < ?1) ORDER BY id DESC LIMIT ?2",
        )
        .bind(page.after.as_deref())
        .bind(page.sql_limit())
        .fetch_all(&self.reader)
        .await
        .classify()?;
        bodies(&rows)
    }

    pub(super) async fn workers_page(&self, page: &Page) -> Result<Vec<WorkerRecord>> {
        let rows = sqlx::query(
            "SELECT body FROM workers WHERE (?1 IS NULL OR id > ?1) ORDER BY id LIMIT ?2",
        )
        .bind(page.after.as_deref())
        .bind(page.sql_limit())
        .fetch_all(&self.reader)
        .await
        .classify()?;
        bodies(&rows)
    }

    pub(super) async fn model_versions_page(&self, page: &Page) -> Result<Vec<ModelVersion>> {
        let rows = sqlx::query(
            "SELECT body FROM model_versions WHERE name IN (
                 SELECT DISTINCT name FROM model_versions WHERE (?1 IS NULL OR name > ?1)
                 ORDER BY name LIMIT ?2)
             ORDER BY name, version",
        )
        .bind(page.after.as_deref())
        .bind(page.sql_limit())
        .fetch_all(&self.reader)
        .await
        .classify()?;
        bodies(&rows)
    }
}
