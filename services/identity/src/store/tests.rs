use super::*;
use gateway_storage::ConnectOptions;
use gateway_storage::page::Page;

async fn open(url: &str) -> IdentityStore {
    let db = Database::connect(url, &ConnectOptions::default())
        .await
        .unwrap();
    db.migrate(&MIGRATIONS).await.unwrap();
    IdentityStore::new(db)
}

fn new_user<'a>(tenant_id: &'a str, username: &'a str) -> NewUser<'a> {
    NewUser {
        tenant_id,
        username,
        email: "someone@example.test",
        password_hash: "$argon2id$fake",
        role: Role::Admin,
        login_method: LoginMethod::Password,
    }
}

fn new_key(tenant_id: &str, user_id: &str, hash: &str) -> NewKey {
    NewKey {
        tenant_id: tenant_id.to_owned(),
        user_id: user_id.to_owned(),
        name: "ci".to_owned(),
        prefix: "sk-abcd".to_owned(),
        key_sha256: hash.to_owned(),
        group_id: None,
        spend_limit_micros: Some(5_000_000),
        plan_id: "plan-1".to_owned(),
        expire_at: None,
        allowed_models: vec!["gpt-4o".to_owned()],
        allowed_ips: vec![],
        completion_cache: false,
    }
}

#[test]
fn both_backends_have_the_same_migration_versions() {
    let (sqlite, postgres) = MIGRATIONS.versions();
    assert_eq!(sqlite, postgres);
}

gateway_testkit::test_on_every_backend! {
    async fn users_round_trip_and_names_are_unique_per_tenant(db) {
        let store = open(db.url()).await;
        let acme = store.create_tenant("acme", "Acme").await.unwrap();
        let globex = store.create_tenant("globex", "Globex").await.unwrap();
        let created = store.create_user(new_user(&acme.id, "ada")).await.unwrap();
        assert_eq!(store.user_by_name(&acme.id, "ada").await.unwrap(), created);
        let duplicate = store.create_user(new_user(&acme.id, "ada")).await.unwrap_err();
        assert!(duplicate.is_already_exists(), "{duplicate:?}");
        store.create_user(new_user(&globex.id, "ada")).await.unwrap();
        assert_eq!(store.users_named("ada").await.unwrap().len(), 2);
        assert!(matches!(store.user_by_name(&acme.id, "bob").await, Err(StorageError::NotFound)));
    }

    async fn duplicate_tenant_slug_is_refused(db) {
        let store = open(db.url()).await;
        store.create_tenant("acme", "Acme").await.unwrap();
        let error = store.create_tenant("acme", "Other").await.unwrap_err();
        assert!(error.is_already_exists(), "{error:?}");
        assert_eq!(store.tenant_by_slug("acme").await.unwrap().name, "Acme");
    }

    async fn user_in_a_missing_tenant_is_refused(db) {
        let store = open(db.url()).await;
        let error = store.create_user(new_user("no-such-tenant", "x")).await.unwrap_err();
        assert!(matches!(error, StorageError::ForeignKey { .. }), "{error:?}");
    }

    async fn key_lookup_by_hash_joins_owner_and_tenant(db) {
        let store = open(db.url()).await;
        let acme = store.create_tenant("acme", "Acme").await.unwrap();
        let ada = store.create_user(new_user(&acme.id, "ada")).await.unwrap();
        let key = store.create_key(new_key(&acme.id, &ada.id, "hash-1")).await.unwrap();
        let found = store.key_by_hash("hash-1").await.unwrap().unwrap();
        assert_eq!(found.key, key);
        assert_eq!(found.tenant_slug, "acme");
        assert_eq!(found.username, "ada");
        assert!(!found.user_disabled);
        assert!(store.key_by_hash("hash-2").await.unwrap().is_none());
        let duplicate = store.create_key(new_key(&acme.id, &ada.id, "hash-1")).await.unwrap_err();
        assert!(duplicate.is_already_exists());
    }

    async fn every_principal_change_is_logged_with_gap_free_versions(db) {
        let store = open(db.url()).await;
        let acme = store.create_tenant("acme", "Acme").await.unwrap();
        let ada = store.create_user(new_user(&acme.id, "ada")).await.unwrap();
        let start = store.current_version().await.unwrap();
        let key = store.create_key(new_key(&acme.id, &ada.id, "hash-1")).await.unwrap();
        let key = store.set_key_frozen(&key, true).await.unwrap();
        assert!(key.frozen);
        store.update_user(&ada.id, &UserUpdate { disabled: Some(true), ..UserUpdate::default() }).await.unwrap();
        store.delete_key(&key).await.unwrap();
        let changes = store.changes_after(start, 100).await.unwrap();
        let kinds: Vec<ChangeKind> = changes.iter().map(|change| change.kind).collect();
        assert_eq!(kinds, [ChangeKind::KeyCreated, ChangeKind::KeyFrozen, ChangeKind::UserDisabled, ChangeKind::KeyDeleted]);
        let versions: Vec<i64> = changes.iter().map(|change| change.version).collect();
        assert_eq!(versions, (start + 1..=start + 4).collect::<Vec<_>>());
        assert_eq!(changes[1].key_sha256, "hash-1");
        assert_eq!(store.current_version().await.unwrap(), start + 4);
    }

    async fn deleting_a_tenant_removes_everything_in_it(db) {
        let store = open(db.url()).await;
        let acme = store.create_tenant("acme", "Acme").await.unwrap();
        let globex = store.create_tenant("globex", "Globex").await.unwrap();
        let ada = store.create_user(new_user(&acme.id, "ada")).await.unwrap();
        let bob = store.create_user(new_user(&globex.id, "bob")).await.unwrap();
        let group = store.create_group(NewGroup { tenant_id: &acme.id, name: "vip", description: "", priority: 5, completion_cache: false }).await.unwrap();
        store.add_member(&group, &ada.id).await.unwrap();
        store.create_key(new_key(&acme.id, &ada.id, "hash-a")).await.unwrap();
        store.create_key(new_key(&globex.id, &bob.id, "hash-b")).await.unwrap();
        store.delete_tenant(&acme.id).await.unwrap();
        assert!(store.key_by_hash("hash-a").await.unwrap().is_none());
        assert!(store.key_by_hash("hash-b").await.unwrap().is_some());
        assert!(matches!(store.get_user(&ada.id).await, Err(StorageError::NotFound)));
        let page = Page::new(0, "").unwrap();
        assert_eq!(store.list_tenants(&page, None).await.unwrap().len(), 1);
    }

    async fn memberships_are_idempotent_and_groups_order_by_priority(db) {
        let store = open(db.url()).await;
        let acme = store.create_tenant("acme", "Acme").await.unwrap();
        let ada = store.create_user(new_user(&acme.id, "ada")).await.unwrap();
        let low = store.create_group(NewGroup { tenant_id: &acme.id, name: "low", description: "", priority: 1, completion_cache: false }).await.unwrap();
        let high = store.create_group(NewGroup { tenant_id: &acme.id, name: "high", description: "", priority: 10, completion_cache: true }).await.unwrap();
        let start = store.current_version().await.unwrap();
        store.add_member(&low, &ada.id).await.unwrap();
        store.add_member(&low, &ada.id).await.unwrap();
        store.add_member(&high, &ada.id).await.unwrap();
        assert_eq!(store.current_version().await.unwrap(), start + 2, "a repeated add changes nothing");
        let names: Vec<String> = store.groups_of_user(&ada.id).await.unwrap().into_iter().map(|group| group.name).collect();
        assert_eq!(names, ["high", "low"]);
        let cached: Vec<bool> = store.groups_of_user(&ada.id).await.unwrap().into_iter().map(|group| group.completion_cache).collect();
        assert_eq!(cached, [true, false], "each group keeps its cache opt-in");
        store.remove_member(&low, &ada.id).await.unwrap();
        store.remove_member(&low, &ada.id).await.unwrap();
        assert_eq!(store.groups_of_user(&ada.id).await.unwrap().len(), 1);
        let page = Page::new(0, "").unwrap();
        let members = store.list_members(&high.id, &page).await.unwrap();
        assert_eq!(members[0].username, "ada");
    }

    async fn pages_walk_every_row_once(db) {
        let store = open(db.url()).await;
        for index in 0..7 {
            store.create_tenant(&format!("tenant-{index}"), "T").await.unwrap();
        }
        let mut seen = Vec::new();
        let mut token = String::new();
        loop {
            let page = Page::new(3, &token).unwrap();
            let mut rows = store.list_tenants(&page, None).await.unwrap();
            token = page.finish(&mut rows, |tenant| &tenant.id);
            seen.extend(rows.into_iter().map(|tenant| tenant.slug));
            if token.is_empty() {
                break;
            }
        }
        seen.sort();
        assert_eq!(seen.len(), 7);
        seen.dedup();
        assert_eq!(seen.len(), 7);
    }
}
