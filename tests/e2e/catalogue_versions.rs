//! Frameworks are versioned: seeding a newer version of a catalogue framework keeps the old one
//! with its assessments beside it, and `?catalog_key=` lists every version.

use custos_core::RequestCtx;
use custos_frameworks::catalog;
use custos_testkit::TestServer;
use serde_json::json;

fn internal(version: &str, ids: &[&str]) -> catalog::CatalogFramework {
    let mut text = format!(
        "format: custos-catalog/v1\nkey: internal\nname: Internal controls {version}\nframework_type: CUSTOM\nversion: '{version}'\nrequirements:\n"
    );
    for id in ids {
        text.push_str(&format!(
            "  - requirement_id: {id}\n    title: Control {id}\n    requirement_type: ADMINISTRATIVE\n    priority: HIGH\n"
        ));
    }
    catalog::parse("internal.yaml", &text).expect("a valid catalogue")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_newer_version_is_seeded_beside_the_old_one_and_its_assessments() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let ctx = RequestCtx::operator(org.id, "acme");
    let first = s.app().frameworks.seed(&ctx, &[internal("2025", &["IC-1"])]).await.unwrap();
    assert!(first[0].framework_created);
    let (status, page) = s.get("/api/compliance/requirements/?search=IC-1", &org.viewer).await;
    assert_eq!(status, 200, "{page}");
    let old_ic_1 = page["results"][0]["id"].as_str().unwrap().to_owned();
    let (status, body) = s
        .post(
            &format!("/api/compliance/requirements/{old_ic_1}/update_status/"),
            &org.editor,
            json!({"compliance_status": "COMPLIANT"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // The 2026 version: a framework of its own; seeding either again creates nothing.
    let second = s.app().frameworks.seed(&ctx, &[internal("2026", &["IC-1", "IC-2"])]).await.unwrap();
    assert!(second[0].framework_created);
    assert_ne!(second[0].framework_id, first[0].framework_id);
    let again =
        s.app().frameworks.seed(&ctx, &[internal("2025", &["IC-1"]), internal("2026", &["IC-1", "IC-2"])]).await;
    assert!(again.unwrap().iter().all(|o| !o.framework_created && o.requirements_created == 0));

    let (status, page) = s.get("/api/compliance/frameworks/?catalog_key=internal", &org.viewer).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["count"], 2, "{page}");
    let mut versions: Vec<&str> =
        page["results"].as_array().unwrap().iter().map(|f| f["version"].as_str().unwrap()).collect();
    versions.sort();
    assert_eq!(versions, ["2025", "2026"]);
    let (_, page) = s.get("/api/compliance/frameworks/?catalog_key=nothing-such", &org.viewer).await;
    assert_eq!(page["count"], 0);
    // The old version keeps its assessment; the new one starts unassessed.
    let (_, old) = s.get(&format!("/api/compliance/requirements/{old_ic_1}/"), &org.viewer).await;
    assert_eq!(old["compliance_status"], "COMPLIANT", "{old}");
    let (_, new) =
        s.get(&format!("/api/compliance/frameworks/{}/compliance_summary/", second[0].framework_id), &org.viewer).await;
    assert_eq!((new["total_requirements"].clone(), new["compliant"].clone()), (json!(2), json!(0)), "{new}");
}
