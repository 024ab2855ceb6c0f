//! Cross-framework mappings: the built-in mapping sets seed between the built-in frameworks,
//! read in both directions with the other side's framework and status, go with a deleted
//! requirement (audited), and belong to their organisation.

use custos_core::RequestCtx;
use custos_frameworks::catalog;
use custos_proto::v1 as pb;
use custos_proto::v1::frameworks_service_client::FrameworksServiceClient;
use custos_testkit::{TestOrg, TestServer};
use diesel::QueryableByName;
use serde_json::{Value, json};
use tonic::Code;

async fn seed(s: &TestServer, org: &TestOrg) -> Vec<custos_frameworks::import::MappingOutcome> {
    let ctx = RequestCtx::operator(org.id, org.slug.clone());
    s.app().frameworks.seed(&ctx, &catalog::builtin().unwrap()).await.expect("seed frameworks");
    s.app().frameworks.seed_mappings(&ctx, &catalog::builtin_mappings().unwrap()).await.expect("seed mappings")
}

/// The id of requirement `requirement_id` of the framework with catalogue key `key`.
async fn requirement(s: &TestServer, org: &TestOrg, key: &str, requirement_id: &str) -> String {
    use diesel_async::RunQueryDsl;
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = diesel::sql_types::Text)]
        id: String,
    }
    let mut conn = s.db.superuser().await;
    let row: Id = diesel::sql_query(
        "SELECT r.id::text AS id FROM requirements r JOIN frameworks f ON f.id = r.framework_id
          WHERE f.organization_id = $1 AND f.catalog_key = $2 AND r.requirement_id = $3",
    )
    .bind::<diesel::sql_types::Uuid, _>(org.id)
    .bind::<diesel::sql_types::Text, _>(key)
    .bind::<diesel::sql_types::Text, _>(requirement_id)
    .get_result(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("{key} {requirement_id}: {e}"));
    row.id
}

async fn mappings(s: &TestServer, org: &TestOrg, id: &str) -> Value {
    let (status, page) = s.get(&format!("/api/compliance/requirements/{id}/mappings/"), &org.viewer).await;
    assert_eq!(status, 200, "{page}");
    page
}

fn pairs(page: &Value) -> Vec<(String, String, String, String)> {
    page["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["direction"].as_str().unwrap().to_owned(),
                m["relationship"].as_str().unwrap().to_owned(),
                m["requirement"]["framework_type"].as_str().unwrap().to_owned(),
                m["requirement"]["requirement_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn built_in_mappings_resolve_and_read_in_both_directions_with_status() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let outcomes = seed(&s, &org).await;
    for o in &outcomes {
        assert!(o.unresolved.is_empty(), "{o:?}");
        assert!(o.created > 0, "{o:?}");
    }
    let nist = outcomes.iter().find(|o| o.key == "nist-csf-2.0--iso27001-2022").unwrap();
    assert_eq!(nist.created, 341);
    // Seeding again creates nothing.
    let again = seed(&s, &org).await;
    assert!(again.iter().all(|o| o.created == 0 && o.existing > 0), "{again:?}");

    // NIST's GV.OC-01 maps to seven ISO/IEC 27001 clauses (NIST's own reference).
    let gv_oc_01 = requirement(&s, &org, "nist-csf-2.0", "GV.OC-01").await;
    let page = mappings(&s, &org, &gv_oc_01).await;
    assert_eq!(page["count"], 7, "{page}");
    let expected: Vec<_> = ["4.1", "6.1.1", "6.1.2", "6.1.3", "8.1", "8.2", "8.3"]
        .map(|id| ("outgoing".to_owned(), "intersect".to_owned(), "ISO27001".to_owned(), id.to_owned()))
        .to_vec();
    assert_eq!(pairs(&page), expected);
    assert_eq!(page["results"][0]["origin"], "nist-csf-2.0--iso27001-2022");
    assert_eq!(page["results"][0]["requirement"]["compliance_status"], "NOT_ASSESSED");

    // From the other side: ISO 4.1 is mapped from NIST and shows its status as it changes.
    let iso_4_1 = requirement(&s, &org, "iso27001-2022", "4.1").await;
    let (status, body) = s
        .post(
            &format!("/api/compliance/requirements/{iso_4_1}/update_status/"),
            &org.editor,
            json!({"compliance_status": "COMPLIANT"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let page = mappings(&s, &org, &iso_4_1).await;
    let from_nist: Vec<_> = pairs(&page).into_iter().filter(|p| p.2 == "NIST_CSF").collect();
    assert!(from_nist.iter().all(|p| p.0 == "incoming" && p.1 == "intersect"), "{from_nist:?}");
    assert!(from_nist.iter().any(|p| p.3 == "GV.OC-01"), "{from_nist:?}");
    let page = mappings(&s, &org, &gv_oc_01).await;
    assert_eq!(page["results"][0]["requirement"]["compliance_status"], "COMPLIANT", "{page}");
    assert_eq!(page["results"][0]["requirement"]["evidence_count"], 0, "{page}");
    // Evidence linked to ISO 4.1 is listed as supporting what maps to it.
    let (status, evidence) = s
        .post(
            "/api/compliance/evidence/",
            &org.editor,
            json!({"title": "Context analysis 2026", "evidence_type": "DOCUMENT", "compliance_requirements": [iso_4_1]}),
        )
        .await;
    assert_eq!(status, 201, "{evidence}");
    let page = mappings(&s, &org, &gv_oc_01).await;
    assert_eq!(page["results"][0]["requirement"]["requirement_id"], "4.1");
    assert_eq!(page["results"][0]["requirement"]["evidence_count"], 1, "{page}");

    // A subset seen from its superset's side is a superset.
    let art_32 = requirement(&s, &org, "gdpr", "Art. 32").await;
    let a_5_34 = requirement(&s, &org, "iso27001-2022", "A.5.34").await;
    let from_gdpr = pairs(&mappings(&s, &org, &art_32).await);
    assert!(
        from_gdpr.contains(&("outgoing".into(), "subset".into(), "ISO27001".into(), "A.5.34".into())),
        "{from_gdpr:?}"
    );
    let from_iso = pairs(&mappings(&s, &org, &a_5_34).await);
    assert!(
        from_iso.contains(&("incoming".into(), "superset".into(), "GDPR".into(), "Art. 32".into())),
        "{from_iso:?}"
    );

    // ISO ↔ SOC 2 ↔ PCI DSS cover access control among others.
    let cc6_1 = requirement(&s, &org, "soc2-tsc-2017", "CC6.1").await;
    let from_soc2 = pairs(&mappings(&s, &org, &cc6_1).await);
    assert!(from_soc2.iter().any(|p| p.2 == "ISO27001") && from_soc2.iter().any(|p| p.2 == "PCI_DSS"), "{from_soc2:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn mappings_go_with_a_deleted_requirement_and_belong_to_their_organisation() {
    let s = TestServer::start().await;
    let acme = s.org("acme").await;
    let globex = s.org("globex").await;
    seed(&s, &acme).await;
    let iso_4_1 = requirement(&s, &acme, "iso27001-2022", "4.1").await;
    let mapped = mappings(&s, &acme, &iso_4_1).await["count"].as_i64().unwrap();
    assert!(mapped > 0);

    // Another organisation neither reads them (REST, gRPC) nor finds the requirement.
    let (status, body) = s.get(&format!("/api/compliance/requirements/{iso_4_1}/mappings/"), &globex.admin).await;
    assert_eq!(status, 404, "{body}");
    let mut client = FrameworksServiceClient::new(s.grpc(Some(&globex.admin)).await);
    let err =
        client.list_requirement_mappings(pb::ListRequirementMappingsRequest { id: iso_4_1.clone() }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let mut own = FrameworksServiceClient::new(s.grpc(Some(&acme.viewer)).await);
    let listed = own
        .list_requirement_mappings(pb::ListRequirementMappingsRequest { id: iso_4_1.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.count, mapped);
    let (status, _) = s.get("/api/compliance/requirements/not-an-id/mappings/", &acme.viewer).await;
    assert_eq!(status, 404);
    // Mappings are not seeded into an organisation whose frameworks are not loaded.
    let ctx = RequestCtx::operator(globex.id, "globex");
    let outcomes = s.app().frameworks.seed_mappings(&ctx, &catalog::builtin_mappings().unwrap()).await.unwrap();
    assert!(outcomes.iter().all(|o| o.created == 0 && o.unresolved[0].contains("is not loaded")), "{outcomes:?}");

    // Deleting the requirement deletes its mappings, each recorded.
    let (status, body) = s.delete(&format!("/api/compliance/requirements/{iso_4_1}/"), &acme.admin).await;
    assert!(status.is_success(), "{status}: {body}");
    let gv_oc_01 = requirement(&s, &acme, "nist-csf-2.0", "GV.OC-01").await;
    let left = pairs(&mappings(&s, &acme, &gv_oc_01).await);
    assert!(left.iter().all(|p| p.3 != "4.1"), "{left:?}");
    assert_eq!(s.audit_count(acme.id, "delete", "requirement_mapping").await, mapped);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_summary_counts_what_mappings_cover_apart_from_direct_results() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    seed(&s, &org).await;
    let framework = |key: &'static str| {
        let s = &s;
        let org = &org;
        async move {
            let (_, page) = s.get("/api/compliance/frameworks/?page_size=100", &org.viewer).await;
            let fw = page["results"].as_array().unwrap().iter().find(|f| f["catalog_key"] == key).cloned();
            fw.unwrap_or_else(|| panic!("{key}: {page}"))["id"].as_str().unwrap().to_owned()
        }
    };
    let comply = |id: String| {
        let s = &s;
        let org = &org;
        async move {
            let path = format!("/api/compliance/requirements/{id}/update_status/");
            let (status, body) = s.post(&path, &org.editor, json!({"compliance_status": "COMPLIANT"})).await;
            assert_eq!(status, 200, "{body}");
        }
    };
    let summary = |fw: String, mapped: bool| {
        let s = &s;
        let org = &org;
        async move {
            let query = if mapped { "?include_mapped=true" } else { "" };
            let (status, body) =
                s.get(&format!("/api/compliance/frameworks/{fw}/compliance_summary/{query}"), &org.viewer).await;
            assert_eq!(status, 200, "{body}");
            body
        }
    };
    let gdpr = framework("gdpr").await;
    let pci = framework("pci-dss-4.0").await;
    let nist = framework("nist-csf-2.0").await;
    // The worked example. GDPR Art. 32 ⊂ ISO A.5.34 (subset, GDPR → ISO); ISO A.8.15 ⊃ PCI 10.2.1
    // and 10.3.2 (superset, ISO → PCI); NIST GV.OC-01 ∩ ISO 4.1 (intersect).
    comply(requirement(&s, &org, "iso27001-2022", "A.5.34").await).await;
    comply(requirement(&s, &org, "iso27001-2022", "A.8.15").await).await;
    comply(requirement(&s, &org, "iso27001-2022", "4.1").await).await;
    // One of PCI's is compliant itself too: counted once, as a direct result.
    comply(requirement(&s, &org, "pci-dss-4.0", "10.3.2").await).await;

    let plain = summary(gdpr.clone(), false).await;
    assert!(plain.get("covered_through_mappings").is_none(), "only when asked: {plain}");
    let with = summary(gdpr, true).await;
    assert_eq!((with["compliant"].clone(), with["covered_through_mappings"].clone()), (json!(0), json!(1)), "{with}");
    let total = with["total_requirements"].as_f64().unwrap();
    let expected = (1.0 * 1000.0 / total).round() / 10.0;
    assert_eq!(with["compliance_percentage_with_mapped"].as_f64().unwrap(), expected, "{with}");
    assert_eq!(with["compliance_percentage"], 0.0);

    let with = summary(pci, true).await;
    assert_eq!((with["compliant"].clone(), with["covered_through_mappings"].clone()), (json!(1), json!(1)), "{with}");
    // An intersection covers nothing.
    let with = summary(nist, true).await;
    assert_eq!(with["covered_through_mappings"], 0, "{with}");
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_mapping_proposes_then_sets_derived_statuses_each_audited() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let other = s.org("globex").await;
    seed(&s, &org).await;
    let (_, page) = s.get("/api/compliance/frameworks/?page_size=100", &org.viewer).await;
    let fw = |key: &str| {
        page["results"].as_array().unwrap().iter().find(|f| f["catalog_key"] == key).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (gdpr, iso) = (fw("gdpr"), fw("iso27001-2022"));
    let a_5_34 = requirement(&s, &org, "iso27001-2022", "A.5.34").await;
    let art_32 = requirement(&s, &org, "gdpr", "Art. 32").await;
    let (status, _) = s
        .post(
            &format!("/api/compliance/requirements/{a_5_34}/update_status/"),
            &org.editor,
            json!({"compliance_status": "COMPLIANT"}),
        )
        .await;
    assert_eq!(status, 200);
    let path = format!("/api/compliance/frameworks/{gdpr}/apply_mapping/");

    // A dry run (any role) proposes; nothing changes.
    let (status, dry) = s.post(&path, &org.viewer, json!({"source_framework": iso})).await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!((dry["applied"].clone(), dry["changed"].clone()), (json!(false), json!(0)));
    let proposals = dry["proposals"].as_array().unwrap();
    let art = proposals.iter().find(|p| p["requirement"]["requirement_id"] == "Art. 32").expect("Art. 32 proposed");
    assert_eq!(art["proposed_status"], "COMPLIANT");
    assert_eq!(
        (art["because"]["requirement_id"].clone(), art["relationship"].clone()),
        (json!("A.5.34"), json!("superset"))
    );
    let (_, before) = s.get(&format!("/api/compliance/requirements/{art_32}/"), &org.viewer).await;
    assert_eq!(before["compliance_status"], "NOT_ASSESSED");
    assert!(before.get("status_derived_from").is_none(), "absent unless derived: {before}");

    // Applying needs an editor; each change is audited with its mapping and marked derived.
    let (status, _) = s.post(&path, &org.viewer, json!({"source_framework": iso, "apply": true})).await;
    assert_eq!(status, 403);
    let (status, done) = s.post(&path, &org.editor, json!({"source_framework": iso, "apply": true})).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["changed"], json!(proposals.len()), "{done}");
    let (_, after) = s.get(&format!("/api/compliance/requirements/{art_32}/"), &org.viewer).await;
    assert_eq!(
        (after["compliance_status"].clone(), after["status_derived_from"].clone()),
        (json!("COMPLIANT"), json!(a_5_34))
    );
    assert_eq!(s.audit_count(org.id, "update_status", "requirement").await, 1 + proposals.len() as i64);
    let (_, again) = s.post(&path, &org.viewer, json!({"source_framework": iso})).await;
    assert!(again["proposals"].as_array().unwrap().is_empty(), "nothing left to carry over: {again}");
    // Assessing it itself clears the derivation.
    let (status, assessed) = s
        .post(
            &format!("/api/compliance/requirements/{art_32}/update_status/"),
            &org.editor,
            json!({"compliance_status": "NON_COMPLIANT"}),
        )
        .await;
    assert_eq!(status, 200, "{assessed}");
    assert!(assessed.get("status_derived_from").is_none(), "{assessed}");

    // Bad input and other tenants.
    for (body, field) in [
        (json!({}), "source_framework"),
        (json!({"source_framework": "nope"}), "source_framework"),
        (json!({"source_framework": gdpr}), "source_framework"),
    ] {
        let (status, err) = s.post(&path, &org.editor, body).await;
        assert_eq!(status, 400, "{err}");
        assert!(err["error"].as_str().unwrap().contains(field), "{err}");
    }
    let (status, _) = s.post(&path, &other.admin, json!({"source_framework": iso})).await;
    assert_eq!(status, 404);
    let (_, theirs) = s.get("/api/compliance/frameworks/?page_size=1", &other.admin).await;
    assert_eq!(theirs["count"], 0);
    let mut client = FrameworksServiceClient::new(s.grpc(Some(&other.admin)).await);
    let err = client
        .apply_mapping(pb::ApplyMappingRequest { id: gdpr.clone(), source_framework: iso.clone(), apply: true })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}
