//! The diesel schema, written by hand to match `migrations/` (checked by the e2e test
//! `schema_drift`).

diesel::table! {
    organizations (id) {
        id -> Uuid,
        slug -> Text,
        name -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    users (id) {
        id -> Uuid,
        organization_id -> Uuid,
        email -> Text,
        display_name -> Text,
        role -> Text,
        is_active -> Bool,
        last_login_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        last_seen_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    api_tokens (id) {
        id -> Uuid,
        organization_id -> Uuid,
        user_id -> Uuid,
        name -> Text,
        token_prefix -> Text,
        token_hash -> Bytea,
        created_at -> Timestamptz,
        last_used_at -> Nullable<Timestamptz>,
        expires_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
        role -> Nullable<Text>,
    }
}

diesel::table! {
    frameworks (id) {
        id -> Uuid,
        organization_id -> Uuid,
        name -> Text,
        framework_type -> Text,
        version -> Text,
        description -> Text,
        applicable_regions -> Array<Text>,
        industry_sectors -> Array<Text>,
        is_active -> Bool,
        effective_date -> Nullable<Date>,
        review_date -> Nullable<Date>,
        catalog_key -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        external_id -> Nullable<Text>,
        attributes -> Jsonb,
    }
}

diesel::table! {
    requirements (id) {
        id -> Uuid,
        organization_id -> Uuid,
        framework_id -> Uuid,
        parent_id -> Nullable<Uuid>,
        requirement_id -> Text,
        title -> Text,
        description -> Text,
        section -> Text,
        requirement_type -> Text,
        priority -> Text,
        compliance_status -> Text,
        is_implemented -> Bool,
        assigned_to -> Nullable<Uuid>,
        last_assessment_date -> Nullable<Date>,
        next_assessment_date -> Nullable<Date>,
        implementation_notes -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        status_derived_from -> Nullable<Uuid>,
        external_id -> Nullable<Text>,
        attributes -> Jsonb,
        is_applicable -> Bool,
        applicability_justification -> Text,
    }
}

diesel::table! {
    /// The sequence in runs of up to 256 consecutive entries: ids, leaf and chain hashes,
    /// concatenated (append-only).
    audit_log (organization_id, first_seq) {
        organization_id -> Uuid,
        first_seq -> BigInt,
        sequenced_at -> Timestamptz,
        event_ids -> Bytea,
        leaf_hashes -> Bytea,
        chain_hashes -> Bytea,
    }
}

diesel::table! {
    /// Sequenced entries' committed fields and salts, one row per run of `audit_log` (same first
    /// sequence number and length); a NULL element is an entry whose content is gone.
    audit_contents (organization_id, first_seq) {
        organization_id -> Uuid,
        first_seq -> BigInt,
        fields -> Array<Nullable<Text>>,
        salts -> Array<Nullable<Bytea>>,
    }
}

diesel::table! {
    /// Entries as written with their changes, until the sequencer moves them into
    /// `audit_contents` (insert-only for the service).
    audit_entries (organization_id, event_id) {
        organization_id -> Uuid,
        event_id -> Uuid,
        fields -> Text,
        salts -> Bytea,
        /// The writing transaction's 64-bit id: what the sequencer takes entries by.
        xid -> BigInt,
        /// What the sequencer commits (NULL for entries sequenced before it was stored here).
        digest -> Nullable<Bytea>,
    }
}

diesel::table! {
    /// What listings filter on, read from the entries' fields behind the sequencer (append-only).
    audit_index (organization_id, seq) {
        organization_id -> Uuid,
        seq -> BigInt,
        event_id -> Uuid,
        recorded_at -> Timestamptz,
        actor -> Text,
        action -> Text,
        resource_type -> Text,
        resource_id -> Text,
    }
}

diesel::table! {
    audit_heads (organization_id) {
        organization_id -> Uuid,
        tree_size -> BigInt,
        chain_hash -> Bytea,
        frontier -> Bytea,
        checkpoint_size -> BigInt,
        checkpoint_at -> Nullable<Timestamptz>,
        pruned_before -> BigInt,
        prune_chain_hash -> Nullable<Bytea>,
        prune_frontier -> Nullable<Bytea>,
        indexed_size -> BigInt,
        updated_at -> Timestamptz,
        sequenced_xid -> BigInt,
        sequenced_event -> Uuid,
        pending_xids -> Array<BigInt>,
    }
}

diesel::table! {
    audit_tree_nodes (organization_id, level, idx) {
        organization_id -> Uuid,
        level -> SmallInt,
        idx -> BigInt,
        hash -> Bytea,
    }
}

diesel::table! {
    audit_checkpoints (organization_id, tree_size) {
        organization_id -> Uuid,
        tree_size -> BigInt,
        root_hash -> Bytea,
        note -> Text,
        key_name -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    audit_verifications (id) {
        id -> Uuid,
        organization_id -> Uuid,
        requested_by -> Text,
        depth -> Text,
        days -> Nullable<Integer>,
        status -> Text,
        first_seq -> BigInt,
        tree_size -> BigInt,
        next_seq -> BigInt,
        entries_checked -> BigInt,
        checkpoints_checked -> BigInt,
        resume_state -> Nullable<Bytea>,
        runner -> Uuid,
        resumes -> Integer,
        first_bad_seq -> Nullable<BigInt>,
        problem -> Nullable<Text>,
        notes -> Array<Text>,
        started_at -> Timestamptz,
        heartbeat_at -> Timestamptz,
        finished_at -> Nullable<Timestamptz>,
        background -> Bool,
    }
}

diesel::table! {
    incidents (id) {
        id -> Uuid,
        organization_id -> Uuid,
        title -> Text,
        description -> Text,
        severity -> Text,
        category -> Text,
        data_classification -> Text,
        status -> Text,
        occurred_at -> Nullable<Timestamptz>,
        detected_at -> Nullable<Timestamptz>,
        resolved_at -> Nullable<Timestamptz>,
        reported_by -> Text,
        assigned_to -> Nullable<Uuid>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        responded_at -> Nullable<Timestamptz>,
        response_due_at -> Nullable<Timestamptz>,
        resolution_due_at -> Nullable<Timestamptz>,
        severity_changed_at -> Nullable<Timestamptz>,
        deleted_at -> Nullable<Timestamptz>,
        deleted_by_run -> Nullable<Uuid>,
    }
}

diesel::table! {
    incident_response_plans (id) {
        id -> Uuid,
        organization_id -> Uuid,
        name -> Text,
        incident_type -> Text,
        severity -> Text,
        detection_procedures -> Text,
        initial_response -> Text,
        escalation_path -> Text,
        investigation_procedures -> Text,
        recovery_procedures -> Text,
        primary_contact -> Nullable<Uuid>,
        is_active -> Bool,
        review_date -> Nullable<Date>,
        version -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    vulnerabilities (id) {
        id -> Uuid,
        organization_id -> Uuid,
        title -> Text,
        description -> Text,
        severity -> Text,
        status -> Text,
        cve_id -> Nullable<Text>,
        cvss_score -> Nullable<Float8>,
        affected_asset -> Text,
        discovered_at -> Timestamptz,
        sla_days -> Int4,
        due_at -> Timestamptz,
        remediated_at -> Nullable<Timestamptz>,
        incident_id -> Nullable<Uuid>,
        assigned_to -> Nullable<Uuid>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
        deleted_by_run -> Nullable<Uuid>,
    }
}

diesel::table! {
    compliance_checkpoints (id) {
        id -> Uuid,
        organization_id -> Uuid,
        name -> Text,
        description -> Text,
        framework_id -> Nullable<Uuid>,
        status -> Text,
        scheduled_date -> Nullable<Date>,
        due_date -> Nullable<Date>,
        completed_date -> Nullable<Date>,
        owner -> Nullable<Uuid>,
        notes -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    legal_holds (id) {
        id -> Uuid,
        organization_id -> Uuid,
        case_name -> Text,
        case_number -> Text,
        description -> Text,
        status -> Text,
        custodians -> Array<Text>,
        start_date -> Date,
        end_date -> Nullable<Date>,
        created_by -> Text,
        released_at -> Nullable<Timestamptz>,
        released_by -> Nullable<Text>,
        release_reason -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    legal_hold_items (hold_id, resource_type, resource_id) {
        organization_id -> Uuid,
        hold_id -> Uuid,
        resource_type -> Text,
        resource_id -> Uuid,
        added_at -> Timestamptz,
        added_by -> Text,
    }
}

diesel::table! {
    evidence (id) {
        id -> Uuid,
        organization_id -> Uuid,
        incident_id -> Nullable<Uuid>,
        title -> Text,
        description -> Text,
        notes -> Text,
        evidence_type -> Text,
        status -> Text,
        source -> Text,
        file_path -> Nullable<Text>,
        file_name -> Nullable<Text>,
        content_type -> Nullable<Text>,
        file_size -> Nullable<BigInt>,
        file_hash -> Nullable<Text>,
        file_blake3 -> Nullable<Text>,
        collected_by -> Text,
        collected_at -> Timestamptz,
        valid_until -> Nullable<Date>,
        retention_period -> Nullable<Integer>,
        last_verified_at -> Nullable<Timestamptz>,
        disposed_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
        deleted_by_run -> Nullable<Uuid>,
        storage_region -> Nullable<Text>,
    }
}

diesel::table! {
    evidence_requirements (evidence_id, requirement_id) {
        organization_id -> Uuid,
        evidence_id -> Uuid,
        requirement_id -> Uuid,
        linked_at -> Timestamptz,
    }
}

diesel::table! {
    custody_records (evidence_id, seq) {
        id -> Uuid,
        organization_id -> Uuid,
        evidence_id -> Uuid,
        seq -> Integer,
        action -> Text,
        actor -> Text,
        actor_role -> Text,
        notes -> Text,
        details -> Jsonb,
        recorded_at -> Timestamptz,
        request_id -> Nullable<Text>,
        previous_hash -> Bytea,
        record_hash -> Bytea,
    }
}

diesel::table! {
    /// A view: current and expired evidence per requirement.
    requirement_evidence (requirement_id) {
        organization_id -> Uuid,
        requirement_id -> Uuid,
        current_count -> BigInt,
        expired_count -> BigInt,
    }
}

diesel::table! {
    /// The evidence that counts for each requirement, one row per item (a view, migration 000027).
    requirement_evidence_items (requirement_id, evidence_id) {
        organization_id -> Uuid,
        requirement_id -> Uuid,
        evidence_id -> Uuid,
        title -> Text,
        file_hash -> Nullable<Text>,
        collected_at -> Timestamptz,
    }
}

diesel::table! {
    /// How many requirements each framework has, kept by triggers in the writing transaction
    /// (exact; the frameworks list reads it instead of counting requirements).
    framework_requirement_counts (organization_id, framework_id) {
        organization_id -> Uuid,
        framework_id -> Uuid,
        requirements -> BigInt,
    }
}

diesel::table! {
    /// Background work (migration 000022): one row per job, claimed under a lease.
    jobs (id) {
        id -> Uuid,
        organization_id -> Nullable<Uuid>,
        kind -> Text,
        parameters -> Jsonb,
        status -> Text,
        progress -> Double,
        counters -> Jsonb,
        checkpoint -> Nullable<Jsonb>,
        result -> Nullable<Jsonb>,
        attempts -> Integer,
        max_attempts -> Integer,
        takeovers -> Integer,
        error -> Nullable<Text>,
        run_after -> Timestamptz,
        runner -> Nullable<Uuid>,
        lease_expires_at -> Nullable<Timestamptz>,
        heartbeat_at -> Nullable<Timestamptz>,
        cancel_requested_at -> Nullable<Timestamptz>,
        cancel_requested_by -> Nullable<Text>,
        created_by -> Text,
        schedule_name -> Nullable<Text>,
        scheduled_for -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        started_at -> Nullable<Timestamptz>,
        finished_at -> Nullable<Timestamptz>,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    /// The steps of a job that are done, each committed with its own changes.
    job_steps (job_id, step) {
        job_id -> Uuid,
        step -> Text,
        organization_id -> Nullable<Uuid>,
        done_at -> Timestamptz,
    }
}

diesel::table! {
    /// When each kind of job runs: a platform schedule (no organisation) or an organisation's.
    job_schedules (id) {
        id -> Uuid,
        organization_id -> Nullable<Uuid>,
        name -> Text,
        kind -> Text,
        cron -> Text,
        enabled -> Bool,
        customized -> Bool,
        next_run_at -> Nullable<Timestamptz>,
        last_run_at -> Nullable<Timestamptz>,
        last_job_id -> Nullable<Uuid>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        updated_by -> Nullable<Text>,
    }
}

diesel::table! {
    /// Where an organisation's events are sent (migration 000032).
    notification_channels (id) {
        id -> Uuid,
        organization_id -> Uuid,
        name -> Text,
        kind -> Text,
        recipients -> Array<Text>,
        url -> Nullable<Text>,
        event_types -> Array<Text>,
        is_active -> Bool,
        data_key_id -> Nullable<Uuid>,
        signing_secret -> Nullable<Bytea>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    /// Every delivery through a channel.
    notification_deliveries (id) {
        id -> Uuid,
        organization_id -> Uuid,
        channel_id -> Uuid,
        event_type -> Text,
        payload -> Jsonb,
        status -> Text,
        attempts -> Integer,
        last_error -> Nullable<Text>,
        delivered_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        event_id -> Nullable<Uuid>,
        next_attempt_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    /// Events waiting to be delivered (migration 000033), written with the change they are about.
    notification_outbox (id) {
        id -> Uuid,
        organization_id -> Uuid,
        event_type -> Text,
        payload -> Jsonb,
        created_at -> Timestamptz,
        dispatched_at -> Nullable<Timestamptz>,
        once_key -> Nullable<Text>,
    }
}

diesel::table! {
    /// The secrets vault (migration 000030): metadata; values only in `secret_versions`, encrypted.
    secrets (id) {
        id -> Uuid,
        organization_id -> Uuid,
        name -> Text,
        description -> Text,
        secret_type -> Text,
        owner_id -> Nullable<Uuid>,
        rotation_enabled -> Bool,
        rotation_days -> Nullable<Integer>,
        two_person_rule -> Bool,
        version -> Integer,
        data_key_id -> Uuid,
        last_rotated_at -> Nullable<Timestamptz>,
        next_rotation_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        due_reported_at -> Nullable<Timestamptz>,
        rotation_error -> Nullable<Text>,
    }
}

diesel::table! {
    /// A secret's values, encrypted, by version.
    secret_versions (secret_id, version) {
        organization_id -> Uuid,
        secret_id -> Uuid,
        version -> Integer,
        ciphertext -> Bytea,
        created_by -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    /// Requests to reveal a secret under the two-person rule.
    secret_reveal_requests (id) {
        id -> Uuid,
        organization_id -> Uuid,
        secret_id -> Uuid,
        requested_by -> Uuid,
        reason -> Text,
        status -> Text,
        approved_by -> Nullable<Uuid>,
        approved_at -> Nullable<Timestamptz>,
        expires_at -> Nullable<Timestamptz>,
        used_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    /// Data keys, wrapped by a key-encryption key derived from the master key (migration 000029).
    vault_data_keys (id) {
        id -> Uuid,
        organization_id -> Uuid,
        purpose -> Text,
        kek_id -> Text,
        wrapped -> Bytea,
        created_at -> Timestamptz,
        rewrapped_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    /// The master keys the platform has used, by fingerprint; retired once nothing uses them.
    vault_master_keys (kek_id) {
        kek_id -> Text,
        first_used_at -> Timestamptz,
        retired_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    /// A document a large framework import runs on, until its job has imported it (migration 000028).
    framework_import_uploads (id) {
        id -> Uuid,
        organization_id -> Uuid,
        file_name -> Text,
        content -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    /// Cross-framework mappings between two requirements (migration 000024).
    requirement_mappings (id) {
        id -> Uuid,
        organization_id -> Uuid,
        source_requirement_id -> Uuid,
        target_requirement_id -> Uuid,
        relationship -> Text,
        rationale -> Text,
        origin -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    access_reviews (id) {
        id -> Uuid,
        organization_id -> Uuid,
        status -> Text,
        stale_after_days -> Int4,
        started_by -> Text,
        started_at -> Timestamptz,
        job_id -> Nullable<Uuid>,
        collected_at -> Nullable<Timestamptz>,
        signed_off_by -> Nullable<Text>,
        signed_off_at -> Nullable<Timestamptz>,
        sign_off_comment -> Nullable<Text>,
        report -> Nullable<Text>,
        report_sha256 -> Nullable<Text>,
    }
}

diesel::table! {
    stale_access_findings (id) {
        id -> Uuid,
        organization_id -> Uuid,
        review_id -> Uuid,
        kind -> Text,
        user_id -> Uuid,
        token_id -> Nullable<Uuid>,
        user_email -> Text,
        user_role -> Text,
        token_prefix -> Nullable<Text>,
        token_name -> Nullable<Text>,
        last_activity_at -> Nullable<Timestamptz>,
        reason -> Text,
        status -> Text,
        action -> Nullable<Text>,
        justification -> Nullable<Text>,
        resolved_by -> Nullable<Text>,
        resolved_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    retention_policies (id) {
        id -> Uuid,
        organization_id -> Uuid,
        name -> Text,
        description -> Text,
        policy_type -> Text,
        entity_type -> Text,
        retention_period -> Int4,
        retention_unit -> Text,
        deletion_method -> Text,
        auto_archive -> Bool,
        auto_delete -> Bool,
        data_classification_levels -> Array<Text>,
        incident_categories -> Array<Text>,
        applicable_frameworks -> Array<Uuid>,
        legal_hold_override -> Bool,
        is_active -> Bool,
        locked -> Bool,
        locked_at -> Nullable<Timestamptz>,
        locked_by -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        managed_by_policy -> Nullable<Uuid>,
    }
}

diesel::table! {
    retention_runs (id) {
        id -> Uuid,
        organization_id -> Uuid,
        policy_id -> Uuid,
        policy_name -> Text,
        entity_type -> Text,
        deletion_method -> Text,
        status -> Text,
        started_by -> Text,
        by_admin -> Bool,
        job_id -> Nullable<Uuid>,
        started_at -> Timestamptz,
        finished_at -> Nullable<Timestamptz>,
        examined -> Int8,
        archived -> Int8,
        soft_deleted -> Int8,
        hard_deleted -> Int8,
        skipped -> Int8,
        restored -> Int8,
        errors_encountered -> Int8,
        error -> Nullable<Text>,
        last_record -> Nullable<Uuid>,
    }
}

diesel::table! {
    retention_run_items (run_id, record_id) {
        organization_id -> Uuid,
        run_id -> Uuid,
        record_id -> Uuid,
        action -> Text,
        reason -> Text,
        at -> Timestamptz,
        restored_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    compliance_reports (id) {
        id -> Uuid,
        organization_id -> Uuid,
        title -> Text,
        description -> Text,
        summary -> Text,
        report_type -> Text,
        status -> Text,
        framework_id -> Nullable<Uuid>,
        prepared_by -> Text,
        content -> Nullable<Text>,
        content_sha256 -> Nullable<Text>,
        generated_at -> Nullable<Timestamptz>,
        job_id -> Nullable<Uuid>,
        published_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    report_sign_offs (report_id, sequence) {
        organization_id -> Uuid,
        report_id -> Uuid,
        sequence -> Int4,
        decision -> Text,
        comment -> Text,
        signer -> Text,
        signed_at -> Timestamptz,
        content_sha256 -> Text,
    }
}

diesel::table! {
    framework_score_snapshots (id) {
        id -> Uuid,
        organization_id -> Uuid,
        framework_id -> Uuid,
        taken_at -> Timestamptz,
        day -> Date,
        source -> Text,
        taken_by -> Text,
        total_requirements -> Int8,
        compliant -> Int8,
        partially_compliant -> Int8,
        non_compliant -> Int8,
        not_assessed -> Int8,
        implemented -> Int8,
        overdue_assessments -> Int8,
        compliance_percentage -> Float8,
        covered_through_mappings -> Int8,
        compliance_percentage_with_mapped -> Float8,
    }
}

diesel::table! {
    workflows (id) {
        id -> Uuid,
        organization_id -> Uuid,
        name -> Text,
        description -> Text,
        workflow_type -> Text,
        status -> Text,
        is_template -> Bool,
        applicable_frameworks -> Array<Uuid>,
        definition -> Jsonb,
        template_key -> Nullable<Text>,
        created_by -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    workflow_instances (id) {
        id -> Uuid,
        organization_id -> Uuid,
        workflow_id -> Uuid,
        title -> Text,
        description -> Text,
        related_incident -> Nullable<Uuid>,
        assigned_to -> Nullable<Uuid>,
        due_date -> Nullable<Timestamptz>,
        status -> Text,
        current_step -> Text,
        definition -> Jsonb,
        deadlines -> Jsonb,
        current_due_at -> Nullable<Timestamptz>,
        stakeholders -> Array<Uuid>,
        step_data -> Jsonb,
        started_at -> Timestamptz,
        completed_at -> Nullable<Timestamptz>,
        created_by -> Text,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    workflow_instance_history (instance_id, sequence) {
        organization_id -> Uuid,
        instance_id -> Uuid,
        sequence -> Int4,
        from_step -> Nullable<Text>,
        to_step -> Text,
        actor -> Text,
        at -> Timestamptz,
        data -> Jsonb,
    }
}

diesel::table! {
    compliance_policies (id) {
        id -> Uuid,
        organization_id -> Uuid,
        name -> Text,
        version_label -> Text,
        policy_type -> Text,
        description -> Text,
        enforcement_level -> Text,
        enforcement_scope -> Text,
        locked -> Bool,
        content -> Text,
        content_sha256 -> Text,
        document -> Jsonb,
        applied_version -> Nullable<Int4>,
        applied_at -> Nullable<Timestamptz>,
        applied_by -> Nullable<Text>,
        created_by -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    compliance_policy_versions (policy_id, version) {
        organization_id -> Uuid,
        policy_id -> Uuid,
        version -> Int4,
        action -> Text,
        restored_version -> Nullable<Int4>,
        content -> Text,
        content_sha256 -> Text,
        document -> Jsonb,
        effective -> Jsonb,
        applied_by -> Text,
        applied_at -> Timestamptz,
    }
}

diesel::table! {
    data_residency (id) {
        id -> Uuid,
        organization_id -> Uuid,
        primary_region -> Text,
        allowed_regions -> Array<Text>,
        storage_prefix -> Nullable<Text>,
        enforce_region -> Bool,
        block_cross_region -> Bool,
        compliance_frameworks -> Array<Text>,
        policy_id -> Nullable<Uuid>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    policy_violations (id) {
        id -> Uuid,
        organization_id -> Uuid,
        policy_id -> Nullable<Uuid>,
        rule -> Text,
        enforcement -> Text,
        outcome -> Text,
        operation -> Text,
        entity_type -> Nullable<Text>,
        entity_id -> Nullable<Uuid>,
        region -> Nullable<Text>,
        message -> Text,
        details -> Jsonb,
        actor -> Text,
        request_id -> Nullable<Text>,
        occurred_at -> Timestamptz,
    }
}

diesel::joinable!(requirements -> frameworks (framework_id));
diesel::joinable!(api_tokens -> users (user_id));
diesel::joinable!(legal_hold_items -> legal_holds (hold_id));
diesel::joinable!(custody_records -> evidence (evidence_id));
diesel::joinable!(evidence_requirements -> evidence (evidence_id));
diesel::joinable!(evidence_requirements -> requirements (requirement_id));
diesel::joinable!(job_steps -> jobs (job_id));
diesel::joinable!(stale_access_findings -> access_reviews (review_id));
diesel::allow_tables_to_appear_in_same_query!(
    compliance_reports,
    report_sign_offs,
    framework_score_snapshots,
    workflows,
    workflow_instances,
    workflow_instance_history,
    compliance_policies,
    compliance_policy_versions,
    data_residency,
    policy_violations,
    retention_runs,
    retention_run_items,
    retention_policies,
    access_reviews,
    stale_access_findings,
    organizations,
    notification_channels,
    notification_deliveries,
    notification_outbox,
    secrets,
    secret_versions,
    secret_reveal_requests,
    vault_data_keys,
    vault_master_keys,
    framework_import_uploads,
    requirement_mappings,
    jobs,
    job_steps,
    job_schedules,
    users,
    api_tokens,
    frameworks,
    requirements,
    audit_log,
    audit_contents,
    audit_entries,
    audit_index,
    audit_heads,
    audit_tree_nodes,
    audit_checkpoints,
    audit_verifications,
    incidents,
    legal_holds,
    legal_hold_items,
    evidence,
    evidence_requirements,
    custody_records,
    incident_response_plans,
    vulnerabilities,
    compliance_checkpoints,
    requirement_evidence,
    requirement_evidence_items,
    framework_requirement_counts
);
