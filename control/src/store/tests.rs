//! The store's behaviour, each test run on SQLite and (with `HUB_TEST_PG_URL`) PostgreSQL.

use serde_json::json;

use super::testing::{Harness, on_both_backends};
use super::{Backend, StoreSettings};
use crate::auth::{Access, Principal, Role, TenantId};
use crate::crypto::MasterKey;
use crate::error::ControlError;
use crate::secret::Secret;

const T0: i64 = 1_800_000_000_000;

fn tenant(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

fn pw(s: &str) -> Secret<String> {
    Secret::new(s.to_string())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Asserts the raw store holds `plain` nowhere — neither as bytes nor hex-encoded.
async fn assert_absent(h: &Harness, plain: &str) {
    let dump = h.raw_dump().await;
    assert!(!dump.is_empty());
    assert!(
        !contains(&dump, plain.as_bytes()),
        "{plain:?} is in the raw store"
    );
    assert!(
        !contains(&dump, hex::encode(plain).as_bytes()),
        "{plain:?} is in the raw store, hex-encoded"
    );
}

on_both_backends! {
    async fn migrations_apply_once_and_a_second_node_reuses_them(h) {
        let backend = h.store.backend();
        assert!(matches!(backend, Backend::Sqlite | Backend::Postgres));
        h.store.create_tenant(&tenant("acme"), "Acme Motors").await.unwrap();
        let second = h.open(MasterKey::generate(1), StoreSettings::default()).await;
        assert_eq!(second.list_tenants().await.unwrap().len(), 1);
        second.close().await;
    }

    async fn tenants_users_and_memberships_make_callers(h) {
        let s = &h.store;
        let acme = tenant("acme");
        let globex = tenant("globex");
        s.create_tenant(&acme, "Acme Motors").await.unwrap();
        s.create_tenant(&globex, "Globex Auto Group").await.unwrap();
        let dup = s.create_tenant(&acme, "Again").await.unwrap_err();
        assert_eq!(dup.code(), "conflict");
        assert_eq!(s.list_tenants().await.unwrap().len(), 2);

        let ann = s.create_user("Ann@Acme.example", &pw("ann's long password"), false).await.unwrap();
        let dup = s.create_user(" ann@acme.example ", &pw("another long password"), false).await.unwrap_err();
        assert_eq!(dup.code(), "conflict");
        s.set_membership(&ann, &acme, Role::Operator).await.unwrap();

        let c = s.caller_for_user(&ann).await.unwrap().unwrap();
        assert_eq!(c.principal, Principal::User(ann.clone()));
        assert_eq!(c.can(&acme, Role::Operator), Access::Allowed);
        assert_eq!(c.can(&acme, Role::Admin), Access::Forbidden);
        assert_eq!(c.can(&globex, Role::Viewer), Access::NotFound);

        // A new role replaces the old one.
        s.set_membership(&ann, &acme, Role::Owner).await.unwrap();
        let c = s.caller_for_user(&ann).await.unwrap().unwrap();
        assert_eq!(c.role_in(&acme), Some(Role::Owner));
        let members = s.list_members(&acme).await.unwrap();
        assert_eq!(members.len(), 1);
        assert_eq!(members[0].0.email, "ann@acme.example");
        assert_eq!(members[0].1, Role::Owner);

        assert!(s.remove_membership(&ann, &acme).await.unwrap());
        let c = s.caller_for_user(&ann).await.unwrap().unwrap();
        assert_eq!(c.can(&acme, Role::Viewer), Access::NotFound);

        let err = s.set_membership(&ann, &tenant("nobody"), Role::Viewer).await.unwrap_err();
        assert_eq!(err.code(), "not_found");

        let root = s.create_user("root@hub.example", &pw("platform admin password"), true).await.unwrap();
        let c = s.caller_for_user(&root).await.unwrap().unwrap();
        assert!(c.platform_admin);
        assert_eq!(c.can(&globex, Role::Owner), Access::Allowed);
    }

    async fn sign_in_gives_a_hashed_session_with_csrf_and_expiry(h) {
        let s = &h.store;
        s.pin_clock_ms(T0);
        let acme = tenant("acme");
        s.create_tenant(&acme, "Acme Motors").await.unwrap();
        let bob = s.create_user("bob@acme.example", &pw("bob's long password"), false).await.unwrap();
        s.set_membership(&bob, &acme, Role::Viewer).await.unwrap();

        let session = s.login("BOB@acme.example", &pw("bob's long password"), "10.0.0.1").await.unwrap();
        assert_eq!(session.user_id, bob);
        assert_eq!(session.expires_at_ms, T0 + s.settings().session_ttl_ms);
        assert!(!format!("{session:?}").contains(session.token.expose().as_str()));
        // Neither the session token nor the password is stored.
        assert_absent(h, session.token.expose()).await;
        assert_absent(h, "bob's long password").await;

        let (caller, info) = s.caller_for_session(session.token.expose()).await.unwrap().unwrap();
        assert_eq!(caller.can(&acme, Role::Viewer), Access::Allowed);
        assert!(info.csrf_matches(&session.csrf_token));
        assert!(!info.csrf_matches("forged"));
        assert!(s.authenticate_session("hubs_not-a-session").await.unwrap().is_none());

        // Expired at exactly its expiry time.
        s.pin_clock_ms(session.expires_at_ms);
        assert!(s.authenticate_session(session.token.expose()).await.unwrap().is_none());
        assert_eq!(s.purge_expired_sessions().await.unwrap(), 1);

        s.pin_clock_ms(T0 + 1);
        let again = s.login("bob@acme.example", &pw("bob's long password"), "10.0.0.1").await.unwrap();
        assert!(s.logout(again.token.expose()).await.unwrap());
        assert!(s.authenticate_session(again.token.expose()).await.unwrap().is_none());
        assert!(!s.logout(again.token.expose()).await.unwrap());
    }

    async fn wrong_password_and_unknown_user_get_the_same_answer(h) {
        let s = &h.store;
        s.create_user("carol@acme.example", &pw("carol's long password"), false).await.unwrap();
        let wrong = s.login("carol@acme.example", &pw("not carol's password"), "10.0.0.2").await.unwrap_err();
        let unknown = s.login("nobody@acme.example", &pw("whatever password"), "10.0.0.2").await.unwrap_err();
        assert!(matches!(wrong, ControlError::InvalidCredentials));
        assert_eq!(wrong.to_string(), unknown.to_string());
        assert_eq!(s.failed_logins_since("carol@acme.example", 0).await.unwrap(), 1);
    }

    async fn sign_in_is_refused_after_repeated_failures_until_the_window_passes(h, settings = StoreSettings {
        login_max_failures: 3,
        login_window_ms: 60_000,
        ..StoreSettings::default()
    }) {
        let s = &h.store;
        let good = pw("dave's long password");
        s.create_user("dave@acme.example", &good, false).await.unwrap();
        for i in 0..3 {
            s.pin_clock_ms(T0 + i * 1000);
            let e = s.login("dave@acme.example", &pw("guess guess guess"), "10.0.0.3").await.unwrap_err();
            assert!(matches!(e, ControlError::InvalidCredentials), "{e}");
        }
        // Locked: even the right password is refused, without being checked.
        s.pin_clock_ms(T0 + 10_000);
        match s.login("dave@acme.example", &good, "10.0.0.3").await.unwrap_err() {
            // The oldest failure (T0) leaves the window at T0 + 60 s.
            ControlError::Throttled { retry_after_ms } => assert_eq!(retry_after_ms, 50_000),
            e => panic!("expected throttling, got {e}"),
        }
        // The lock is per (login, address): another address may still sign in.
        s.login("dave@acme.example", &good, "10.0.0.4").await.unwrap();

        assert_eq!(s.login_retry_after_ms("Dave@acme.example", "10.0.0.3").await.unwrap(), Some(50_000));
        assert_eq!(s.login_retry_after_ms("dave@acme.example", "10.0.0.4").await.unwrap(), None);
        // A second control node on the same store sees the same lock.
        let other = h.open(MasterKey::generate(1), settings()).await;
        other.pin_clock_ms(T0 + 10_000);
        assert_eq!(other.login("dave@acme.example", &good, "10.0.0.3").await.unwrap_err().code(), "throttled");
        other.close().await;

        // Once the oldest failure has aged out, attempts are allowed again; a success clears
        // the count.
        s.pin_clock_ms(T0 + 60_001);
        s.login("dave@acme.example", &good, "10.0.0.3").await.unwrap();
        for i in 0..2 {
            s.pin_clock_ms(T0 + 61_000 + i);
            s.login("dave@acme.example", &pw("guess guess guess"), "10.0.0.3").await.unwrap_err();
        }
        s.login("dave@acme.example", &good, "10.0.0.3").await.unwrap();
    }

    async fn disabled_users_lose_their_sessions_and_cannot_sign_in(h) {
        let s = &h.store;
        let erin = s.create_user("erin@acme.example", &pw("erin's long password"), false).await.unwrap();
        let session = s.login("erin@acme.example", &pw("erin's long password"), "10.0.0.5").await.unwrap();
        s.disable_user(&erin).await.unwrap();
        assert!(s.authenticate_session(session.token.expose()).await.unwrap().is_none());
        assert!(s.caller_for_user(&erin).await.unwrap().is_none());
        let e = s.login("erin@acme.example", &pw("erin's long password"), "10.0.0.5").await.unwrap_err();
        assert!(matches!(e, ControlError::InvalidCredentials));
    }

    async fn api_tokens_authenticate_until_revoked_or_expired(h) {
        let s = &h.store;
        s.pin_clock_ms(T0);
        let acme = tenant("acme");
        let globex = tenant("globex");
        s.create_tenant(&acme, "Acme Motors").await.unwrap();
        s.create_tenant(&globex, "Globex Auto Group").await.unwrap();

        let new = s.create_api_token(&acme, Role::Operator, "nightly export", 3_600_000, None).await.unwrap();
        assert!(new.token.expose().starts_with("hubt_"));
        assert!(!format!("{new:?}").contains(new.token.expose().as_str()));
        assert_absent(h, new.token.expose()).await;

        let caller = s.caller_for_api_token(new.token.expose()).await.unwrap().unwrap();
        assert_eq!(caller.principal, Principal::ApiToken(new.info.id.clone()));
        assert!(!caller.platform_admin);
        assert_eq!(caller.can(&acme, Role::Operator), Access::Allowed);
        assert_eq!(caller.can(&acme, Role::Admin), Access::Forbidden);
        assert_eq!(caller.can(&globex, Role::Viewer), Access::NotFound);

        assert!(s.authenticate_api_token("hubt_guessed").await.unwrap().is_none());
        assert!(s.authenticate_api_token("no-prefix").await.unwrap().is_none());

        // Another tenant cannot even see it to revoke it.
        let e = s.revoke_api_token(&globex, &new.info.id).await.unwrap_err();
        assert_eq!(e.code(), "not_found");
        assert!(s.authenticate_api_token(new.token.expose()).await.unwrap().is_some());

        s.pin_clock_ms(T0 + 10);
        s.revoke_api_token(&acme, &new.info.id).await.unwrap();
        assert!(s.authenticate_api_token(new.token.expose()).await.unwrap().is_none());
        s.pin_clock_ms(T0 + 20);
        s.revoke_api_token(&acme, &new.info.id).await.unwrap();
        let listed = s.list_api_tokens(&acme).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].revoked_at_ms, Some(T0 + 10));
        assert!(s.list_api_tokens(&globex).await.unwrap().is_empty());

        let short = s.create_api_token(&acme, Role::Viewer, "short-lived", 1000, None).await.unwrap();
        s.pin_clock_ms(T0 + 20 + 999);
        assert!(s.authenticate_api_token(short.token.expose()).await.unwrap().is_some());
        s.pin_clock_ms(T0 + 20 + 1000);
        assert!(s.authenticate_api_token(short.token.expose()).await.unwrap().is_none());

        let e = s.create_api_token(&tenant("nobody"), Role::Viewer, "x", 1000, None).await.unwrap_err();
        assert_eq!(e.code(), "not_found");
        let e = s.create_api_token(&acme, Role::Viewer, "x", 0, None).await.unwrap_err();
        assert_eq!(e.code(), "invalid_input");
    }

    async fn saved_credentials_appear_nowhere_in_the_raw_store(h) {
        let s = &h.store;
        let acme = tenant("acme");
        s.create_tenant(&acme, "Acme Motors").await.unwrap();
        let secret_value = "sf-client-secret-7f3a9c1e-PLAINTEXT";
        let refresh = "refresh-token-5d2b8e-PLAINTEXT";
        let creds = Secret::new(json!({
            "client_id": "3MVG9-acme",
            "client_secret": secret_value,
            "refresh_token": refresh,
        }));
        let info = s.put_credentials(&acme, "salesforce", &creds).await.unwrap();
        assert_eq!(info.rotations, 0);
        assert_eq!(info.key_version, 1);

        // The dump does read the rows: what is not secret is there.
        let dump = h.raw_dump().await;
        assert!(contains(&dump, b"Acme Motors") && contains(&dump, b"salesforce"));
        assert_absent(h, secret_value).await;
        assert_absent(h, refresh).await;
        assert_absent(h, "client_secret").await;

        let back = s.get_credentials(&acme, "salesforce").await.unwrap().unwrap();
        assert_eq!(back.expose(), creds.expose());
        assert!(!format!("{back:?}").contains(secret_value));
        assert!(s.get_credentials(&acme, "hubspot").await.unwrap().is_none());

        // Replacing counts a rotation and still stores no plaintext.
        let new_secret = "sf-client-secret-ROTATED-91b0";
        let info = s
            .put_credentials(&acme, "salesforce", &Secret::new(json!({"client_secret": new_secret})))
            .await
            .unwrap();
        assert_eq!(info.rotations, 1);
        assert!(info.rotated_at_ms.is_some());
        assert_absent(h, new_secret).await;
        assert_eq!(
            s.get_credentials(&acme, "salesforce").await.unwrap().unwrap().expose(),
            &json!({"client_secret": new_secret})
        );
        assert_eq!(s.list_credentials(&acme).await.unwrap().len(), 1);
        assert!(s.delete_credentials(&acme, "salesforce").await.unwrap());
        assert!(s.get_credentials(&acme, "salesforce").await.unwrap().is_none());
    }

    async fn credentials_are_checked_and_kept_per_tenant(h) {
        let s = &h.store;
        let acme = tenant("acme");
        let globex = tenant("globex");
        s.create_tenant(&acme, "Acme Motors").await.unwrap();
        s.create_tenant(&globex, "Globex Auto Group").await.unwrap();
        s.put_credentials(&acme, "hubspot", &Secret::new(json!({"api_key": "acme-key"}))).await.unwrap();
        s.put_credentials(&globex, "hubspot", &Secret::new(json!({"api_key": "globex-key"}))).await.unwrap();
        assert_eq!(s.get_credentials(&acme, "hubspot").await.unwrap().unwrap().expose()["api_key"], "acme-key");
        assert_eq!(s.get_credentials(&globex, "hubspot").await.unwrap().unwrap().expose()["api_key"], "globex-key");

        let e = s.put_credentials(&tenant("nobody"), "hubspot", &Secret::new(json!({"k": 1}))).await.unwrap_err();
        assert_eq!(e.code(), "not_found");
        let e = s.put_credentials(&acme, "Bad Name", &Secret::new(json!({"k": 1}))).await.unwrap_err();
        assert!(e.to_string().starts_with("connector:"), "{e}");
        let e = s.put_credentials(&acme, "hubspot", &Secret::new(json!("a string"))).await.unwrap_err();
        assert!(e.to_string().starts_with("credentials:"), "{e}");
    }

    async fn a_ciphertext_copied_to_another_tenant_does_not_decrypt(h) {
        let s = &h.store;
        let acme = tenant("acme");
        let globex = tenant("globex");
        s.create_tenant(&acme, "Acme Motors").await.unwrap();
        s.create_tenant(&globex, "Globex Auto Group").await.unwrap();
        s.put_credentials(&acme, "hubspot", &Secret::new(json!({"api_key": "acme-key"}))).await.unwrap();
        s.put_credentials(&globex, "other", &Secret::new(json!({"api_key": "globex-key"}))).await.unwrap();
        // Someone with write access to the database copies acme's row under globex.
        crate::store::on_pool!(s, |p| sqlx::query(
            "INSERT INTO connector_credentials (tenant_id, connector, ciphertext, nonce, \
             key_version, created_at_ms, rotations) \
             SELECT $1, connector, ciphertext, nonce, key_version, created_at_ms, rotations \
             FROM connector_credentials WHERE tenant_id = $2 AND connector = 'hubspot'"
        )
        .bind(globex.as_str())
        .bind(acme.as_str())
        .execute(p)
        .await
        .map(|r| assert_eq!(r.rows_affected(), 1))
        .unwrap());
        let e = s.get_credentials(&globex, "hubspot").await.unwrap_err();
        assert_eq!(e.code(), "crypto");
        assert_eq!(s.get_credentials(&acme, "hubspot").await.unwrap().unwrap().expose()["api_key"], "acme-key");
    }

    async fn two_nodes_storing_credentials_at_once_share_one_data_key(h) {
        let acme = tenant("acme");
        h.store.create_tenant(&acme, "Acme Motors").await.unwrap();
        let other = h.open(MasterKey::from_base64(1, h.store.master_key().to_base64().expose()).unwrap(), StoreSettings::default()).await;
        let mut tasks = Vec::new();
        for i in 0..8 {
            let node = if i % 2 == 0 { h.store.clone() } else { other.clone() };
            let acme = acme.clone();
            tasks.push(tokio::spawn(async move {
                node.put_credentials(&acme, &format!("conn-{i}"), &Secret::new(json!({"n": i}))).await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        for i in 0..8 {
            let c = other.get_credentials(&acme, &format!("conn-{i}")).await.unwrap().unwrap();
            assert_eq!(c.expose()["n"], i);
        }
        other.close().await;
    }

    async fn rotating_the_master_key_rewraps_every_data_key(h) {
        let s = &h.store;
        for t in ["acme", "globex"] {
            s.create_tenant(&tenant(t), t).await.unwrap();
            s.put_credentials(&tenant(t), "dealertrack", &Secret::new(json!({"password": format!("{t}-pw")}))).await.unwrap();
        }
        let same = s.rotate_master_key(MasterKey::generate(1)).await.unwrap_err();
        assert_eq!(same.code(), "invalid_input");

        let new_key = MasterKey::generate(2);
        let new_b64 = new_key.to_base64().into_inner();
        assert_eq!(s.rotate_master_key(new_key).await.unwrap(), 2);
        for t in ["acme", "globex"] {
            let c = s.get_credentials(&tenant(t), "dealertrack").await.unwrap().unwrap();
            assert_eq!(c.expose()["password"], format!("{t}-pw"));
        }

        // A node still on the old key says which versions disagree.
        let stale = h.open(MasterKey::generate(1), StoreSettings::default()).await;
        let e = stale.get_credentials(&tenant("acme"), "dealertrack").await.unwrap_err();
        assert_eq!(e.code(), "crypto");
        assert!(e.to_string().contains("version 2") && e.to_string().contains("version 1"), "{e}");
        stale.close().await;

        // A node given the new key reads everything; a wrong key of the right version fails.
        let fresh = h.open(MasterKey::from_base64(2, &new_b64).unwrap(), StoreSettings::default()).await;
        assert_eq!(fresh.get_credentials(&tenant("globex"), "dealertrack").await.unwrap().unwrap().expose()["password"], "globex-pw");
        fresh.close().await;
        let wrong = h.open(MasterKey::generate(2), StoreSettings::default()).await;
        assert_eq!(wrong.get_credentials(&tenant("acme"), "dealertrack").await.unwrap_err().code(), "crypto");
        wrong.close().await;
    }
}

#[tokio::test]
async fn an_in_memory_sqlite_store_works_and_other_urls_are_refused() {
    let s = super::ControlStore::connect(
        "sqlite::memory:",
        MasterKey::generate(1),
        StoreSettings::default(),
    )
    .await
    .unwrap();
    s.create_tenant(&tenant("acme"), "Acme Motors")
        .await
        .unwrap();
    s.put_credentials(&tenant("acme"), "hubspot", &Secret::new(json!({"k": "v"})))
        .await
        .unwrap();
    assert!(
        s.get_credentials(&tenant("acme"), "hubspot")
            .await
            .unwrap()
            .is_some()
    );
    let e = super::ControlStore::connect(
        "mysql://x",
        MasterKey::generate(1),
        StoreSettings::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), "config");
}
