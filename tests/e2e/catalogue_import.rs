//! Importing and exporting frameworks: NIST's OSCAL catalog and the framework and mapping
//! libraries of another GRC tool, read as they are from the shared fixtures; round trips;
//! refusals with every problem located; large imports as jobs; tenancy and roles, REST and gRPC.

use std::collections::BTreeMap;

use custos_proto::v1 as pb;
use custos_proto::v1::frameworks_service_client::FrameworksServiceClient;
use custos_testkit::{TestOrg, TestServer, fixture, validate_oscal};
use serde_json::{Value, json};

const IMPORT: &str = "/api/compliance/frameworks/import/";
const OSCAL_LOW: &str = "oscal/NIST_SP-800-53_rev5_LOW-baseline-resolved-profile_catalog.json";
const CSF_LIBRARY: &str = "ciso-assistant-library/nist-csf-2.0.yaml";
const CSF_ISO_MAPPING: &str = "ciso-assistant-library/mapping-nist-csf-2.0-to-iso27001-2022.yaml";

fn read_fixture(relative: &str) -> String {
    std::fs::read_to_string(fixture(relative)).expect("fixture readable")
}

/// Uploads `text` as the file of a multipart import.
async fn upload(s: &TestServer, token: &str, name: &str, text: &str, fields: &[(&str, &str)]) -> (u16, Value) {
    let (status, body) =
        s.upload(IMPORT, token, fields, Some((name, "application/octet-stream", text.as_bytes())), &[]).await;
    (status.as_u16(), body)
}

/// Every requirement of a framework as (requirement_id → (title, description, parent's
/// requirement_id, external_id)).
async fn requirements_of(
    s: &TestServer,
    token: &str,
    framework: &str,
) -> BTreeMap<String, (String, String, Option<String>, Option<String>)> {
    let mut rows = Vec::new();
    let mut page = 1;
    loop {
        let (status, body) = s
            .get(&format!("/api/compliance/frameworks/{framework}/requirements/?page_size=500&page={page}"), token)
            .await;
        assert_eq!(status, 200, "{body}");
        rows.extend(body["results"].as_array().unwrap().clone());
        if body["next"].is_null() && body["next_page"].is_null() {
            break;
        }
        page += 1;
    }
    let ids: BTreeMap<String, String> = rows
        .iter()
        .map(|r| (r["id"].as_str().unwrap().to_owned(), r["requirement_id"].as_str().unwrap().to_owned()))
        .collect();
    rows.iter()
        .map(|r| {
            let parent = r["parent"].as_str().map(|p| ids[p].clone());
            (
                r["requirement_id"].as_str().unwrap().to_owned(),
                (
                    r["title"].as_str().unwrap().to_owned(),
                    r["description"].as_str().unwrap().to_owned(),
                    parent,
                    r["external_id"].as_str().map(str::to_owned),
                ),
            )
        })
        .collect()
}

async fn export(s: &TestServer, token: &str, framework: &str, format: &str) -> (u16, String) {
    let response = s
        .raw(
            reqwest::Method::GET,
            &format!("/api/compliance/frameworks/{framework}/export/?format={format}"),
            Some(token),
            None,
        )
        .await;
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// Controls (with enhancements) and groups of an OSCAL catalog, counted from the JSON itself.
fn count_oscal(catalog: &Value) -> (usize, usize) {
    fn controls(list: &Value) -> usize {
        list.as_array().map_or(0, |cs| cs.iter().map(|c| 1 + controls(&c["controls"])).sum())
    }
    fn walk(groups: &Value) -> (usize, usize) {
        groups.as_array().map_or((0, 0), |gs| {
            gs.iter().fold((0, 0), |(c, g), group| {
                let (sub_c, sub_g) = walk(&group["groups"]);
                (c + controls(&group["controls"]) + sub_c, g + 1 + sub_g)
            })
        })
    }
    let (c, g) = walk(&catalog["catalog"]["groups"]);
    (c + controls(&catalog["catalog"]["controls"]), g)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_oscal_fixture_imports_every_control_and_round_trips() {
    let s = TestServer::start().await;
    let a = s.org("acme").await;
    let b = s.org("globex").await;
    let text = read_fixture(OSCAL_LOW);
    let (controls, groups) = count_oscal(&serde_json::from_str(&text).unwrap());
    assert!(controls >= 149 && groups >= 18, "{controls} controls, {groups} groups");

    // A viewer may not import; an editor may, and a dry run keeps nothing.
    assert_eq!(upload(&s, &a.viewer, "low.json", &text, &[]).await.0, 403);
    let (status, dry) = upload(&s, &a.editor, "low.json", &text, &[("dry_run", "true")]).await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["frameworks"][0]["requirements_created"], (controls + groups) as i64);
    let (_, list) = s.get("/api/compliance/frameworks/", &a.viewer).await;
    assert_eq!(list["count"], 0, "a dry run keeps nothing: {list}");

    let (status, imported) = upload(&s, &a.editor, "low.json", &text, &[]).await;
    assert_eq!(status, 200, "{imported}");
    assert_eq!(imported["format"], "oscal");
    let framework = imported["frameworks"][0]["framework"].as_str().unwrap().to_owned();
    assert_eq!(imported["frameworks"][0]["requirements_created"], (controls + groups) as i64);
    let (_, fw) = s.get(&format!("/api/compliance/frameworks/{framework}/"), &a.viewer).await;
    assert_eq!(fw["framework_type"], "NIST_SP_800_53", "{fw}");
    assert_eq!(fw["version"], "5.1.1+u4");
    assert_eq!(fw["requirements_count"], (controls + groups) as i64);

    let reqs = requirements_of(&s, &a.viewer, &framework).await;
    let (title, description, parent, external) = &reqs["AC-2"];
    assert_eq!(
        (title.as_str(), parent.as_deref(), external.as_deref()),
        ("Account Management", Some("ac"), Some("ac-2"))
    );
    assert!(description.contains("a. Define and document the types of accounts"), "{description}");
    assert!(description.contains("c. Require [Assignment: prerequisites and criteria] for group"), "{description}");
    assert!(!reqs.values().any(|(_, d, _, _)| d.contains("{{")), "every parameter insertion is rendered");
    // Enhancements sit under their control.
    assert_eq!(reqs["IA-2(1)"].2.as_deref(), Some("IA-2"));
    assert_eq!(reqs["IA-2(1)"].3.as_deref(), Some("ia-2.1"));

    // Importing the same file again creates nothing new.
    let (_, again) = upload(&s, &a.editor, "low.json", &text, &[]).await;
    assert_eq!(
        (again["frameworks"][0]["framework_created"].clone(), again["frameworks"][0]["requirements_created"].clone()),
        (json!(false), json!(0))
    );

    // The export is a valid OSCAL catalog (a third-party validator says so) that re-imports,
    // elsewhere, to the same requirements.
    let (status, catalog) = export(&s, &a.viewer, &framework, "oscal-catalog").await;
    assert_eq!(status, 200, "{catalog}");
    let catalog_json: Value = serde_json::from_str(&catalog).unwrap();
    validate_oscal(&catalog_json).expect("the exported catalog is valid OSCAL");
    assert_eq!(count_oscal(&catalog_json), (controls, groups));
    let (status, reimported) = upload(&s, &b.editor, "exported.json", &catalog, &[]).await;
    assert_eq!(status, 200, "{reimported}");
    let copy = reimported["frameworks"][0]["framework"].as_str().unwrap().to_owned();
    assert_eq!(requirements_of(&s, &b.viewer, &copy).await, reqs);

    // The Custos format round-trips too, attributes and all.
    let (status, yaml) = export(&s, &a.viewer, &framework, "custos").await;
    assert_eq!(status, 200);
    let c = s.org("initech").await;
    let (status, from_yaml) = upload(&s, &c.admin, "low.yaml", &yaml, &[]).await;
    assert_eq!(status, 200, "{from_yaml}");
    let copy = from_yaml["frameworks"][0]["framework"].as_str().unwrap().to_owned();
    assert_eq!(requirements_of(&s, &c.viewer, &copy).await, reqs);
    let (_, again) = export(&s, &c.viewer, &copy, "oscal-catalog").await;
    validate_oscal(&serde_json::from_str(&again).unwrap()).expect("valid after a trip through the Custos format");

    // Another organisation cannot read it; an unknown format is a clear 400.
    assert_eq!(export(&s, &b.admin, &framework, "custos").await.0, 404);
    let (status, body) = export(&s, &a.viewer, &framework, "pdf").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("oscal-catalog"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn withdrawn_controls_are_marked_or_skipped() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let catalog = json!({"catalog": {
        "uuid": "5f0e3c6a-2b1d-4c8e-9a7f-1d2e3f4a5b6c",
        "metadata": {"title": "Tiny", "last-modified": "2024-01-01T00:00:00Z", "version": "1", "oscal-version": "1.1.2"},
        "groups": [{"id": "xx", "title": "Family", "controls": [
            {"id": "xx-1", "title": "Kept", "props": [{"name": "label", "value": "XX-1"}],
             "parts": [{"id": "xx-1_smt", "name": "statement", "prose": "Do it."}]},
            {"id": "xx-2", "title": "Gone", "props": [{"name": "label", "value": "XX-2"}, {"name": "status", "value": "withdrawn"}]}
        ]}]
    }});
    let text = catalog.to_string();
    let (_, skipped) = upload(&s, &org.editor, "tiny.json", &text, &[("withdrawn", "skip"), ("dry_run", "true")]).await;
    assert_eq!(skipped["frameworks"][0]["requirements_total"], 2, "{skipped}");
    assert!(skipped["warnings"][0].as_str().unwrap().contains("1 withdrawn"), "{skipped}");
    let (_, marked) = upload(&s, &org.editor, "tiny.json", &text, &[]).await;
    let framework = marked["frameworks"][0]["framework"].as_str().unwrap().to_owned();
    let reqs = requirements_of(&s, &org.viewer, &framework).await;
    assert_eq!(reqs["XX-2"].0, "Gone (withdrawn)");
    assert_eq!(reqs["XX-1"].1, "Do it.");
    let (status, body) = upload(&s, &org.editor, "tiny.json", &text, &[("withdrawn", "hide")]).await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn library_fixtures_import_framework_then_mapping_resolving_by_urn() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let framework_text = read_fixture(CSF_LIBRARY);
    let mapping_text = read_fixture(CSF_ISO_MAPPING);

    // The mapping before the frameworks it names: nothing resolves, and it says so.
    let (status, early) = upload(&s, &org.editor, "mapping.yaml", &mapping_text, &[]).await;
    assert_eq!(status, 200, "{early}");
    assert_eq!(early["mapping_sets"][0]["created"], 0);
    let unresolved = early["mapping_sets"][0]["unresolved"].as_array().unwrap();
    assert!(
        unresolved
            .iter()
            .any(|u| u.as_str().unwrap().contains("urn:intuitem:risk:framework:nist-csf-2.0 is not loaded")),
        "{early}"
    );

    let (status, imported) = upload(&s, &org.editor, "nist-csf-2.0.yaml", &framework_text, &[]).await;
    assert_eq!(status, 200, "{imported}");
    assert_eq!(imported["format"], "library");
    let f = &imported["frameworks"][0];
    assert_eq!(
        (f["key"].clone(), f["requirements_created"].clone()),
        (json!("urn:intuitem:risk:framework:nist-csf-2.0"), json!(134))
    );
    let framework = f["framework"].as_str().unwrap().to_owned();
    let (_, fw) = s.get(&format!("/api/compliance/frameworks/{framework}/"), &org.viewer).await;
    assert_eq!(
        (fw["framework_type"].clone(), fw["external_id"].clone()),
        (json!("NIST_CSF"), json!("urn:intuitem:risk:framework:nist-csf-2.0"))
    );
    let reqs = requirements_of(&s, &org.viewer, &framework).await;
    let (title, _, parent, urn) = &reqs["GV.OC-01"];
    assert_eq!(parent.as_deref(), Some("GV.OC"));
    assert_eq!(urn.as_deref(), Some("urn:intuitem:risk:req_node:nist-csf-2.0:gv.oc-01"));
    assert!(title.starts_with("The organizational mission is understood"), "{title}");
    assert_eq!(reqs["GV"].0, "GOVERN");

    // ISO 27001 comes from the built-in catalogue, which carries the library's URNs.
    let ctx = custos_core::RequestCtx::operator(org.id, org.slug.clone());
    let iso: Vec<_> =
        custos_frameworks::catalog::builtin().unwrap().into_iter().filter(|c| c.key == "iso27001-2022").collect();
    s.app().frameworks.seed(&ctx, &iso).await.unwrap();
    let (status, mapped) = upload(&s, &org.editor, "mapping.yaml", &mapping_text, &[]).await;
    assert_eq!(status, 200, "{mapped}");
    let sets = mapped["mapping_sets"].as_array().unwrap();
    assert_eq!(sets.len(), 2, "{mapped}");
    // 343 pairs each, of which NIST's file lists two twice: kept once, and said so.
    for set in sets {
        assert_eq!(set["unresolved"], json!([]), "{set}");
        assert_eq!(set["created"], 341, "{set}");
    }
    assert!(mapped["warnings"].to_string().contains("2 pairs listed more than once"), "{mapped}");
    // Mappings resolve in both directions from the imported framework's requirement.
    let (_, gv) =
        s.get(&format!("/api/compliance/requirements/?framework={framework}&search=GV.OC-01"), &org.viewer).await;
    let gv_id = gv["results"][0]["id"].as_str().unwrap_or_else(|| panic!("{gv}")).to_owned();
    let (_, m) = s.get(&format!("/api/compliance/requirements/{gv_id}/mappings/"), &org.viewer).await;
    let targets: Vec<&str> =
        m["results"].as_array().unwrap().iter().map(|r| r["requirement_id"].as_str().unwrap_or_default()).collect();
    assert!(m["count"].as_i64().unwrap() >= 5, "{m}");
    assert!(targets.contains(&"4.1") || m.to_string().contains("\"4.1\""), "{m}");

    // Again: nothing new.
    let (_, again) = upload(&s, &org.editor, "mapping.yaml", &mapping_text, &[]).await;
    assert!(
        again["mapping_sets"].as_array().unwrap().iter().all(|s| s["created"] == 0 && s["existing"] == 341),
        "{again}"
    );
    let (_, again) = upload(&s, &org.editor, "nist-csf-2.0.yaml", &framework_text, &[]).await;
    assert_eq!(again["frameworks"][0]["requirements_created"], 0);

    // Over gRPC the same, with the same roles.
    let mut viewer = FrameworksServiceClient::new(s.grpc(Some(&org.viewer)).await);
    let request =
        pb::ImportFrameworkRequest { content: framework_text.clone(), dry_run: Some(true), ..Default::default() };
    let denied = viewer.import_framework(request.clone()).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    let mut editor = FrameworksServiceClient::new(s.grpc(Some(&org.editor)).await);
    let dry = editor.import_framework(request).await.unwrap().into_inner();
    assert_eq!((dry.format.as_str(), dry.frameworks[0].requirements_created), ("library", 0));
    let exported = viewer
        .export_framework(pb::ExportFrameworkRequest { id: framework.clone(), format: "custos".into() })
        .await
        .unwrap()
        .into_inner();
    assert!(exported.content.contains("urn:intuitem:risk:req_node:nist-csf-2.0:gv.oc-01"));
    let other = s.org("globex").await;
    let mut stranger = FrameworksServiceClient::new(s.grpc(Some(&other.admin)).await);
    let hidden = stranger.export_framework(pb::ExportFrameworkRequest { id: framework, format: "custos".into() }).await;
    assert_eq!(hidden.unwrap_err().code(), tonic::Code::NotFound);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_files_are_refused_whole_with_every_problem_located() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let refused = async |name: &str, text: &str| {
        let (status, body) = upload(&s, &org.editor, name, text, &[]).await;
        assert_eq!(status, 422, "{name}: {body}");
        assert!(body["error"].as_str().unwrap().contains("nothing was imported"), "{body}");
        body["details"].as_array().unwrap().clone()
    };

    // A library: three problems, each with its line and column.
    let library = "urn: urn:x:library:t\nversion: 1\nobjects:\n  framework:\n    urn: urn:x:framework:t\n    name: T\n    requirement_nodes:\n    - urn: urn:x:t:a\n      ref_id: A\n    - ref_id: B\n    - urn: urn:x:t:c\n      parent_urn: urn:x:t:nowhere\n    - urn: urn:x:t:a\n";
    let issues = refused("t.yaml", library).await;
    assert_eq!(issues.len(), 3, "{issues:?}");
    assert_eq!((issues[0]["line"].clone(), issues[0]["column"].clone()), (json!(10), json!(7)), "{issues:?}");
    assert_eq!((issues[2]["line"].clone(), issues[2]["column"].clone()), (json!(13), json!(12)), "{issues:?}");
    assert!(issues[1]["message"].as_str().unwrap().contains("urn:x:t:nowhere"));
    assert_eq!(issues[2]["line"], 13);
    // Broken YAML, broken JSON: located.
    let issues = refused("t.yaml", "urn: x\nobjects: [\n").await;
    assert!(issues[0]["line"].is_number(), "{issues:?}");
    let issues = refused("t.json", "{\"catalog\": {\"uuid\": }").await;
    assert_eq!(issues[0]["line"], 1, "{issues:?}");
    // An OSCAL catalog with several problems: all of them, with their JSON paths.
    let bad = json!({"catalog": {
        "uuid": "5f0e3c6a-2b1d-4c8e-9a7f-1d2e3f4a5b6c",
        "metadata": {"title": "Bad", "last-modified": "2024-01-01T00:00:00Z", "version": "1", "oscal-version": "1.1.2"},
        "controls": [{"id": "c-1", "title": "One"}, {"id": "c-1", "title": "Again"}, {"id": "1 bad", "title": "Three"}]
    }});
    let issues = refused("bad.json", &bad.to_string()).await;
    assert!(issues.len() >= 2, "{issues:?}");
    assert!(issues.iter().all(|i| i["path"].as_str().unwrap().starts_with("$.catalog.controls[")), "{issues:?}");
    // A profile is not a catalog.
    let issues = refused("profile.json", &read_fixture("oscal/NIST_SP-800-53_rev5_LOW-baseline_profile.json")).await;
    assert!(issues[0]["message"].as_str().unwrap().contains("profile"), "{issues:?}");
    // A Custos catalogue with an unknown type, a mapping library with an unknown relation.
    let issues = refused(
        "c.yaml",
        "format: custos-catalog/v1\nkey: k\nname: n\nframework_type: NOPE\nversion: '1'\nrequirements: []\n",
    )
    .await;
    assert!(issues[0]["message"].as_str().unwrap().contains("NOPE"), "{issues:?}");
    let mapping = "urn: urn:x:m\nobjects:\n  requirement_mapping_sets:\n  - urn: urn:x:set\n    source_framework_urn: urn:x:a\n    target_framework_urn: urn:x:b\n    requirement_mappings:\n    - source_requirement_urn: a1\n      target_requirement_urn: b1\n      relationship: sameish\n";
    let issues = refused("m.yaml", mapping).await;
    assert_eq!(issues[0]["line"], 10, "{issues:?}");
    // Nothing of any of them was kept.
    let (_, list) = s.get("/api/compliance/frameworks/", &org.viewer).await;
    assert_eq!(list["count"], 0, "{list}");
    // Bad requests: an empty document, an unknown format.
    let (status, _) = s.post(IMPORT, &org.editor, json!({"content": "  "})).await;
    assert_eq!(status, 400);
    let (status, body) = s.post(IMPORT, &org.editor, json!({"content": "x: 1", "format": "xlsx"})).await;
    assert_eq!(status, 400, "{body}");
}

/// A framework library of `n` requirements (a root and its children).
fn generated_library(n: usize) -> String {
    let mut text = String::from(
        "urn: urn:custos:test:library:big\nversion: 1\nobjects:\n  framework:\n    urn: urn:custos:test:framework:big\n    name: Big\n    requirement_nodes:\n    - urn: urn:custos:test:node:big:root\n      ref_id: ROOT\n      name: Everything\n      assessable: false\n",
    );
    for i in 1..n {
        text.push_str(&format!(
            "    - urn: urn:custos:test:node:big:r{i}\n      ref_id: R-{i}\n      parent_urn: urn:custos:test:node:big:root\n      description: Requirement number {i} of a generated library\n      assessable: true\n"
        ));
    }
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn large_imports_run_as_a_job_with_their_outcome() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let text = generated_library(6_000);
    let before = audit_entries(&s, &org).await;
    let (status, started) = upload(&s, &org.editor, "big.yaml", &text, &[]).await;
    assert_eq!(status, 200, "{started}");
    let job = started["job"]["id"].as_str().expect("a large import is a job").to_owned();
    assert_eq!(started["job"]["kind"], "frameworks.import");
    let mut finished = Value::Null;
    for _ in 0..600 {
        let (_, j) = s.get(&format!("/api/compliance/jobs/{job}/"), &org.admin).await;
        if j["status"] == "succeeded" || j["status"] == "failed" {
            finished = j;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(finished["status"], "succeeded", "{finished}");
    let result: Value = match &finished["result"] {
        Value::String(s) => serde_json::from_str(s).unwrap(),
        other => other.clone(),
    };
    assert_eq!(result["frameworks"][0]["requirements_created"], 6_000, "{result}");
    let (_, list) = s.get("/api/compliance/frameworks/?search=Big", &org.viewer).await;
    assert_eq!(list["results"][0]["requirements_count"], 6_000, "{list}");
    // Every requirement's creation is in the audit trail (and the framework's, and the job's).
    assert!(audit_entries(&s, &org).await >= before + 6_001);
    // The job names the document (its digest), without carrying it; the upload is gone.
    let parameters = finished["parameters"].to_string();
    assert!(parameters.contains("sha256") && parameters.len() < 1_000, "{parameters}");
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = s.db.superuser().await;
    let left = diesel::sql_query("SELECT count(*) AS n FROM framework_import_uploads").get_result::<N>(&mut conn).await;
    assert_eq!(left.unwrap().n, 0);
}

async fn audit_entries(s: &TestServer, org: &TestOrg) -> i64 {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let sql = format!(
        "SELECT count(*) AS n FROM {} WHERE organization_id = '{}'",
        custos_testkit::audit_sql::ALL_AUDIT_FIELDS,
        org.id
    );
    let mut conn = s.db.superuser().await;
    diesel::sql_query(sql).get_result::<N>(&mut conn).await.unwrap().n
}

#[tokio::test(flavor = "multi_thread")]
async fn assessment_results_export_cites_statuses_and_is_valid_oscal() {
    let s = TestServer::start().await;
    let org: TestOrg = s.org("acme").await;
    let ctx = custos_core::RequestCtx::operator(org.id, org.slug.clone());
    s.app().frameworks.seed(&ctx, &custos_frameworks::catalog::builtin().unwrap()).await.unwrap();
    let (_, list) = s.get("/api/compliance/frameworks/?catalog_key=iso27001-2022", &org.viewer).await;
    let framework = list["results"][0]["id"].as_str().unwrap_or_else(|| panic!("{list}")).to_owned();
    let (_, reqs) =
        s.get(&format!("/api/compliance/requirements/?framework={framework}&search=A.5.15"), &org.viewer).await;
    let a515 = reqs["results"][0]["id"].as_str().unwrap_or_else(|| panic!("{reqs}")).to_owned();
    let (_, reqs) =
        s.get(&format!("/api/compliance/requirements/?framework={framework}&search=A.8.15"), &org.viewer).await;
    let a815 = reqs["results"][0]["id"].as_str().unwrap().to_owned();
    for (id, status) in [(&a515, "COMPLIANT"), (&a815, "NON_COMPLIANT")] {
        let (code, body) = s
            .post(
                &format!("/api/compliance/requirements/{id}/update_status/"),
                &org.editor,
                json!({"compliance_status": status}),
            )
            .await;
        assert_eq!(code, 200, "{body}");
    }
    let (status, text) = export(&s, &org.viewer, &framework, "oscal-assessment-results").await;
    assert_eq!(status, 200, "{text}");
    let ar: Value = serde_json::from_str(&text).unwrap();
    validate_oscal(&ar).expect("valid OSCAL assessment-results");
    let result = &ar["assessment-results"]["results"][0];
    let findings = result["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 2, "{result}");
    let states: BTreeMap<&str, &str> = findings
        .iter()
        .map(|f| (f["target"]["target-id"].as_str().unwrap(), f["target"]["status"]["state"].as_str().unwrap()))
        .collect();
    // The targets are the catalog export's control ids.
    let (_, catalog) = export(&s, &org.viewer, &framework, "oscal-catalog").await;
    for id in states.keys() {
        assert!(catalog.contains(&format!("\"id\": \"{id}\"")), "{id} is a control of the catalog export");
    }
    assert_eq!(states.values().filter(|s| **s == "satisfied").count(), 1);
    assert_eq!(states.values().filter(|s| **s == "not-satisfied").count(), 1);
    let reviewed = result["reviewed-controls"]["control-selections"][0]["include-controls"].as_array().unwrap();
    assert_eq!(reviewed.len(), 34 + 7 + 93, "every clause and control was reviewed");
}
