//! The desk's endpoints with a fake gateway: what they show, what they send to the pipeline,
//! what they refuse, and what they audit.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::*;
use crate::store::desk::{ConflictEvent, DeadLetterStatus, DeskConflictStatus};

async fn bearer(store: &ControlStore, tenant: &TenantId, role: Role) -> Cred {
    let tok = store
        .create_api_token(tenant, role, "desk", 3_600_000, None)
        .await
        .expect("token");
    Cred::Bearer(tok.token.expose().clone())
}

pub(super) async fn the_desk_shows_resolves_replays_and_discards(store: &ControlStore) {
    let (acme, globex) = (t("acme"), t("globex"));
    store.create_tenant(&acme, "Acme").await.expect("acme");
    store
        .create_tenant(&globex, "Globex")
        .await
        .expect("globex");
    let gateway = Arc::new(FakeGateway::default());
    let router = super::super::ApiState::new(store.clone(), ApiConfig::default())
        .with_gateway(gateway.clone())
        .into_api()
        .router;
    let viewer = bearer(store, &acme, Role::Viewer).await;
    let operator = bearer(store, &acme, Role::Operator).await;
    for id in ["customer:c1", "customer:c2", "customer:c3", "customer:c4"] {
        store
            .upsert_conflict(&desk_conflict(&acme, id))
            .await
            .expect("conflict");
    }
    store
        .upsert_conflict(&desk_conflict(&globex, "customer:g1"))
        .await
        .expect("theirs");
    let base = "/api/v1/tenants/acme";

    // The list: pending ones, filterable, without values.
    let r = call(
        &router,
        Verb::Get,
        &format!("{base}/conflicts?status=pending&entity=customer&limit=3"),
        &viewer,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let body = r.json();
    assert_eq!(body["conflicts"].as_array().expect("list").len(), 3);
    assert!(body["next_cursor"].is_string());
    assert!(!String::from_utf8_lossy(&r.body).contains("Patricia"));
    let next = body["next_cursor"].as_str().expect("cursor").to_string();
    let r = call(
        &router,
        Verb::Get,
        &format!("{base}/conflicts?limit=3&cursor={next}"),
        &viewer,
        None,
    )
    .await;
    assert_eq!(r.json()["conflicts"].as_array().expect("list").len(), 1);
    let r = call(
        &router,
        Verb::Get,
        &format!("{base}/conflicts?status=sideways"),
        &viewer,
        None,
    )
    .await;
    assert_eq!(
        error_of(&r),
        (422, "invalid_input".into(), Some("status".into()))
    );

    // One conflict: both sides, field by field, the held ones marked.
    let r = call(
        &router,
        Verb::Get,
        &format!("{base}/conflicts/customer:c1"),
        &viewer,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let c = r.json();
    assert_eq!(c["fields"][0]["field"], "first_name");
    assert_eq!(c["fields"][0]["current"]["value"], "Pat");
    assert_eq!(c["fields"][0]["incoming"]["value"], "Patricia");
    assert_eq!(c["fields"][0]["held"], true);
    assert_eq!(c["fields"][2]["held"], false);
    assert_eq!(c["held_fields"], json!(["first_name", "phone"]));
    // Another tenant's conflict, through one's own tenant: 404.
    let r = call(
        &router,
        Verb::Get,
        &format!("{base}/conflicts/customer:g1"),
        &viewer,
        None,
    )
    .await;
    assert_eq!(error_of(&r).0, 404);
    let r = call(
        &router,
        Verb::Post,
        &format!("{base}/conflicts/customer:g1/resolve"),
        &operator,
        Some(json!({"choice": "keep_current"})),
    )
    .await;
    assert_eq!(error_of(&r).0, 404);

    // Resolving: a viewer may not; every held field needs a choice, and only those.
    let resolve = format!("{base}/conflicts/customer:c1/resolve");
    let r = call(
        &router,
        Verb::Post,
        &resolve,
        &viewer,
        Some(json!({"choice": "keep_current"})),
    )
    .await;
    assert_eq!(error_of(&r).0, 403);
    let r = call(
        &router,
        Verb::Post,
        &resolve,
        &operator,
        Some(json!({"fields": {"first_name": "take_incoming"}})),
    )
    .await;
    assert_eq!(
        error_of(&r),
        (422, "invalid_input".into(), Some("fields.phone".into()))
    );
    let r = call(&router, Verb::Post, &resolve, &operator, Some(json!({"fields": {"first_name": "take_incoming", "phone": "keep_current", "city": "keep_current"}}))).await;
    assert_eq!(
        error_of(&r),
        (422, "invalid_input".into(), Some("fields.city".into()))
    );
    let r = call(
        &router,
        Verb::Post,
        &resolve,
        &operator,
        Some(json!({"fields": {"first_name": "sideways", "phone": "keep_current"}})),
    )
    .await;
    assert_eq!(error_of(&r).0, 422);
    assert!(gateway.resolutions.lock().expect("lock").is_empty());

    let entered = "+15125550100";
    let r = call(
        &router,
        Verb::Post,
        &resolve,
        &operator,
        Some(json!({"fields": {"first_name": "take_incoming", "phone": {"value": entered}}})),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::ACCEPTED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.json()["status"], "resolution_submitted");
    let sent = gateway.resolutions.lock().expect("lock").clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (
            sent[0].entity.as_str(),
            sent[0].key.as_str(),
            sent[0].conflict_id.as_str()
        ),
        ("customer", "ck-1", "customer:c1")
    );
    assert_eq!(
        sent[0].resolution["fields"],
        json!({"first_name": "take_incoming", "phone": {"value": entered}})
    );
    assert!(
        sent[0].resolution["resolved_by"]
            .as_str()
            .expect("by")
            .starts_with("control:token:")
    );
    let entries = store
        .list_audit(Some(&acme), 0, i64::MAX, 100)
        .await
        .expect("audit");
    let last = entries.last().expect("entry");
    assert_eq!(
        (last.action.as_str(), last.target.as_str()),
        ("conflict.resolve", "conflict/customer:c1")
    );
    assert!(
        !serde_json::to_string(&last.after)
            .expect("json")
            .contains(entered),
        "{:?}",
        last.after
    );

    // The transform's answer: resolved; resolving again is refused.
    let mut applied = desk_conflict(&acme, "customer:c1");
    applied.event = ConflictEvent::Resolved;
    applied.fields = json!([]);
    applied.version = 3;
    store.upsert_conflict(&applied).await.expect("resolved");
    let r = call(
        &router,
        Verb::Post,
        &resolve,
        &operator,
        Some(json!({"choice": "keep_current"})),
    )
    .await;
    assert_eq!(error_of(&r), (409, "not_pending".into(), None));

    // A pipeline that does not acknowledge: 503, and the conflict stays pending.
    gateway.fail.store(true, Ordering::SeqCst);
    let r = call(
        &router,
        Verb::Post,
        &format!("{base}/conflicts/customer:c2/resolve"),
        &operator,
        Some(json!({"choice": "keep_current"})),
    )
    .await;
    assert_eq!(error_of(&r), (503, "pipeline_unavailable".into(), None));
    let c2 = store
        .get_conflict(&acme, "customer:c2")
        .await
        .expect("read")
        .expect("c2");
    assert_eq!(c2.status, DeskConflictStatus::Pending);
    gateway.fail.store(false, Ordering::SeqCst);

    // Many at once: each answered on its own.
    let r = call(&router, Verb::Post, &format!("{base}/conflicts/resolve"), &operator, Some(json!({"conflicts": ["customer:c2", "customer:c3", "customer:g1"], "choice": "take_incoming"}))).await;
    assert_eq!(r.status, StatusCode::OK);
    let results = r.json()["results"].clone();
    assert_eq!(results[0]["status"], "resolution_submitted");
    assert_eq!(results[1]["status"], "resolution_submitted");
    assert_eq!(results[2]["error"]["code"], "not_found");
    let r = call(&router, Verb::Post, &format!("{base}/conflicts/resolve"), &operator, Some(json!({"resolutions": [{"conflict": "customer:c4", "fields": {"first_name": "keep_current", "phone": "take_incoming"}}]}))).await;
    assert_eq!(r.json()["results"][0]["status"], "resolution_submitted");
    assert_eq!(gateway.resolutions.lock().expect("lock").len(), 4);

    // Dead letters.
    let mine = [desk_dead_letter(&acme), desk_dead_letter(&acme)];
    for d in &mine {
        store.upsert_dead_letter(d).await.expect("dead letter");
    }
    let theirs = desk_dead_letter(&globex);
    store.upsert_dead_letter(&theirs).await.expect("theirs");
    let r = call(
        &router,
        Verb::Get,
        &format!("{base}/dead-letters?field=last_name&stage=transform&status=pending"),
        &viewer,
        None,
    )
    .await;
    assert_eq!(r.json()["dead_letters"].as_array().expect("list").len(), 2);
    let r = call(
        &router,
        Verb::Get,
        &format!("{base}/dead-letters?error_class=validation"),
        &viewer,
        None,
    )
    .await;
    assert!(
        r.json()["dead_letters"]
            .as_array()
            .expect("list")
            .is_empty()
    );
    let one = format!("{base}/dead-letters/{}", mine[0].id);
    let r = call(&router, Verb::Get, &one, &viewer, None).await;
    assert_eq!(r.json()["errors"][0]["field"], "last_name");
    for (verb, suffix, body) in [
        (Verb::Get, "", None),
        (Verb::Post, "/replay", None),
        (Verb::Post, "/discard", Some(json!({"reason": "not ours"}))),
    ] {
        let r = call(
            &router,
            verb,
            &format!("{base}/dead-letters/{}{suffix}", theirs.id),
            &operator,
            body,
        )
        .await;
        assert_eq!(error_of(&r).0, 404, "{verb:?} {suffix}");
    }
    let r = call(&router, Verb::Post, &format!("{one}/replay"), &viewer, None).await;
    assert_eq!(error_of(&r).0, 403);
    let r = call(
        &router,
        Verb::Post,
        &format!("{one}/replay"),
        &operator,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["status"], "replayed");
    let replays = gateway.replays.lock().expect("lock").clone();
    assert_eq!(replays.len(), 1);
    assert_eq!(
        (
            replays[0].topic.as_str(),
            replays[0].key.as_deref(),
            &replays[0].value
        ),
        (
            mine[0].original_topic.as_str(),
            mine[0].original_key.as_deref(),
            &mine[0].original_value
        )
    );
    let r = call(
        &router,
        Verb::Post,
        &format!("{one}/replay"),
        &operator,
        None,
    )
    .await;
    assert_eq!(error_of(&r), (409, "not_pending".into(), None));
    assert_eq!(
        gateway.replays.lock().expect("lock").len(),
        1,
        "a replayed record is never produced again"
    );

    let other = format!("{base}/dead-letters/{}/discard", mine[1].id);
    let r = call(
        &router,
        Verb::Post,
        &other,
        &operator,
        Some(json!({"reason": ""})),
    )
    .await;
    assert_eq!(
        error_of(&r),
        (422, "invalid_input".into(), Some("reason".into()))
    );
    let r = call(
        &router,
        Verb::Post,
        &other,
        &operator,
        Some(json!({"reason": "a test record"})),
    )
    .await;
    assert_eq!(r.json()["status"], "discarded");
    let r = call(
        &router,
        Verb::Post,
        &other,
        &operator,
        Some(json!({"reason": "again"})),
    )
    .await;
    assert_eq!(error_of(&r).0, 409);

    // After a mapping fix: every pending one, and only those.
    let more = [desk_dead_letter(&acme), desk_dead_letter(&acme)];
    for d in &more {
        store.upsert_dead_letter(d).await.expect("dead letter");
    }
    let r = call(
        &router,
        Verb::Post,
        &format!("{base}/dead-letters/replay"),
        &operator,
        Some(json!({"filter": {"field": "last_name"}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let replayed: Vec<String> = serde_json::from_value(r.json()["replayed"].clone()).expect("ids");
    assert_eq!(replayed, [more[0].id.clone(), more[1].id.clone()]);
    let r = call(
        &router,
        Verb::Post,
        &format!("{base}/dead-letters/replay"),
        &operator,
        Some(json!({"all": true})),
    )
    .await;
    assert!(r.json()["replayed"].as_array().expect("ids").is_empty());
    let r = call(
        &router,
        Verb::Post,
        &format!("{base}/dead-letters/replay"),
        &operator,
        Some(json!({})),
    )
    .await;
    assert_eq!(error_of(&r).0, 422);
    let theirs_now = store
        .get_dead_letter(&globex, &theirs.id)
        .await
        .expect("read")
        .expect("theirs");
    assert_eq!(
        theirs_now.status,
        DeadLetterStatus::Pending,
        "another tenant's untouched"
    );
    let actions: Vec<String> = store
        .list_audit(Some(&acme), 0, i64::MAX, 100)
        .await
        .expect("audit")
        .into_iter()
        .map(|e| e.action)
        .collect();
    for a in [
        "conflict.resolve",
        "conflict.resolve_bulk",
        "dead_letter.replay",
        "dead_letter.discard",
        "dead_letter.replay_bulk",
    ] {
        assert!(actions.iter().any(|x| x == a), "{a} audited: {actions:?}");
    }
}

pub(super) async fn without_a_gateway_the_desk_reads_but_does_not_act(store: &ControlStore) {
    let acme = t("acme");
    store.create_tenant(&acme, "Acme").await.expect("acme");
    let router = api(store.clone(), ApiConfig::default()).router;
    let operator = bearer(store, &acme, Role::Operator).await;
    store
        .upsert_conflict(&desk_conflict(&acme, "customer:c1"))
        .await
        .expect("conflict");
    let d = desk_dead_letter(&acme);
    store.upsert_dead_letter(&d).await.expect("dead letter");
    let r = call(
        &router,
        Verb::Get,
        "/api/v1/tenants/acme/conflicts",
        &operator,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = call(
        &router,
        Verb::Post,
        "/api/v1/tenants/acme/conflicts/customer:c1/resolve",
        &operator,
        Some(json!({"choice": "keep_current"})),
    )
    .await;
    assert_eq!(error_of(&r), (501, "pipeline_not_connected".into(), None));
    let r = call(
        &router,
        Verb::Post,
        &format!("/api/v1/tenants/acme/dead-letters/{}/replay", d.id),
        &operator,
        None,
    )
    .await;
    assert_eq!(error_of(&r), (501, "pipeline_not_connected".into(), None));
    let c = store
        .get_conflict(&acme, "customer:c1")
        .await
        .expect("read")
        .expect("c1");
    assert_eq!(c.status, DeskConflictStatus::Pending);
    let dl = store
        .get_dead_letter(&acme, &d.id)
        .await
        .expect("read")
        .expect("dl");
    assert_eq!(dl.status, DeadLetterStatus::Pending);
}
