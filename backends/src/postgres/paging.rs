//! Pages of listings in SQL: the cursor is a key of the listing's order
//! (ids are UUIDv7, so id order is creation order), so each page is one
//! indexed range scan with a `LIMIT`. A cursor that is not an id of the
//! listing's kind is refused by the caller before it gets here.

use super::*;
use tracseq_core::paging::Page;

impl PostgresStateStore {
    async fn page_of<T: serde::de::DeserializeOwned + Send>(
        &self,
        sql: &'static str,
        page: &Page,
    ) -> Result<Vec<T>> {
        self.run(|_| async move {
            let rows = sqlx::query(sql)
                .bind(page.after.as_deref())
                .bind(page.sql_limit())
                .fetch_all(&self.pool)
                .await?;
            bodies(&rows)
        })
        .await
    }

    pub(super) async fn experiments_page(&self, page: &Page) -> Result<Vec<Experiment>> {
        self.page_of(
            "SELECT body FROM experiments WHERE ($1::uuid IS NULL OR id < $1::uuid)
             ORDER BY id DESC LIMIT $2",
            page,
        )
        .await
    }

    pub(super) async fn datasets_page(&self, page: &Page) -> Result<Vec<DatasetRecord>> {
        self.page_of(
            "SELECT body FROM datasets WHERE ($1::uuid IS NULL OR id < $1::uuid)
             ORDER BY id DESC LIMIT $2",
            page,
        )
        .await
    }

    pub(super) async fn workers_page(&self, page: &Page) -> Result<Vec<WorkerRecord>> {
        self.page_of(
            "SELECT body FROM workers WHERE ($1::text IS NULL OR id > $1) ORDER BY id LIMIT $2",
            page,
        )
        .await
    }

    pub(super) async fn model_versions_page(&self, page: &Page) -> Result<Vec<ModelVersion>> {
        self.page_of(
            "SELECT body FROM model_versions WHERE name IN (
                 SELECT DISTINCT name FROM model_versions WHERE ($1::text IS NULL OR name > $1)
                 ORDER BY name LIMIT $2)
             ORDER BY name, version",
            page,
        )
        .await
    }
}
