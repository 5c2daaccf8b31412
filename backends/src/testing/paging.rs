//! Paging in the `StateStore` suite: walking every page of a listing, a
//! few items at a time, gives the whole listing in the same order, each
//! item once, whatever the store held before.

use super::{new_experiment, t0};
use serde_json::{json, Map};
use std::collections::BTreeMap;
use tracseq_core::ids::DatasetId;
use tracseq_core::paging::Page;
use tracseq_core::ports::StateStore;
use tracseq_core::types::{DatasetRecord, NewModelVersion};

/// Every page of a listing, `limit` at a time, following `key` as cursor.
async fn walk<T, F, Fut>(limit: u32, key: impl Fn(&T) -> String, page: F) -> Vec<T>
where
    F: Fn(Page) -> Fut,
    Fut: std::future::Future<Output = Vec<T>>,
{
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let items = page(Page {
            limit,
            after: after.clone(),
        })
        .await;
        assert!(
            items.len() <= limit as usize,
            "a page holds at most its limit"
        );
        let full = items.len() == limit as usize;
        after = items.last().map(&key);
        out.extend(items);
        if !full {
            return out;
        }
    }
}

pub(super) async fn pages_walk_every_listing_once_in_order(s: &dyn StateStore) {
    for i in 0..5 {
        s.insert_experiment(&new_experiment(&format!("paged-{i}")))
            .await
            .unwrap();
        let ds = DatasetRecord {
            id: DatasetId::new(),
            name: format!("paged-{i}"),
            artifact_path: "datasets/x/data.csv".into(),
            sha256: "00".repeat(32),
            size_bytes: 1,
            rows: 1,
            schema: json!([]),
            created_at: t0(),
            owner: None,
        };
        s.insert_dataset(&ds).await.unwrap();
    }
    for name in ["paged-a", "paged-b", "paged-c"] {
        for version in 1..=2 {
            let new = NewModelVersion {
                name: name.into(),
                version,
                job_id: None,
                family: "linear".into(),
                experiment_id: None,
                artifact_path: format!("models/{name}/{version}/model.json"),
                sha256: "ab".repeat(32),
                metrics: BTreeMap::new(),
                params: Map::new(),
                target: "y".into(),
                owner: None,
                description: None,
                lineage: Default::default(),
                tags: Default::default(),
            };
            s.register_model_version(new, t0()).await.unwrap();
        }
    }

    let all = s.list_experiments(None).await.unwrap();
    let paged = walk(
        2,
        |e: &tracseq_core::types::Experiment| e.id.to_string(),
        |p| async move { s.page_experiments(&p).await.unwrap() },
    )
    .await;
    assert_eq!(paged, all, "experiments: newest first, each once");

    let all = s.list_datasets().await.unwrap();
    let paged = walk(
        2,
        |d: &DatasetRecord| d.id.to_string(),
        |p| async move { s.page_datasets(&p).await.unwrap() },
    )
    .await;
    assert_eq!(paged, all, "data sets: newest first, each once");

    let all = s.list_workers().await.unwrap();
    let paged = walk(
        1,
        |w: &tracseq_core::fleet::WorkerRecord| w.id.0.clone(),
        |p| async move { s.page_workers(&p).await.unwrap() },
    )
    .await;
    assert_eq!(paged, all, "workers: by id, each once");

    // Model pages count models, each with all its versions.
    let all = s.list_model_versions(None).await.unwrap();
    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = s
            .page_model_versions(&Page {
                limit: 2,
                after: after.clone(),
            })
            .await
            .unwrap();
        let mut names: Vec<&str> = page.iter().map(|v| v.name.as_str()).collect();
        names.dedup();
        assert!(names.len() <= 2, "two models a page: {names:?}");
        let full = names.len() == 2;
        after = page.last().map(|v| v.name.clone());
        paged.extend(page);
        if !full {
            break;
        }
    }
    assert_eq!(paged, all, "models: by name, every version, each once");
    assert!(s.page_experiments(&Page::all()).await.unwrap().len() >= 5);
}
