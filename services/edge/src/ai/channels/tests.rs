use super::*;

fn channel(id: &str, priority: i32, weight: i32, groups: &[&str]) -> pb::SnapshotChannel {
    pb::SnapshotChannel {
        channel: Some(pb::Channel {
            id: id.to_owned(),
            tenant_id: "t1".to_owned(),
            name: id.to_owned(),
            provider: pb::Provider::Openai.into(),
            models: vec!["gpt-x".to_owned(), "gpt-y".to_owned()],
            model_mapping: [("gpt-y".to_owned(), format!("{id}-y"))]
                .into_iter()
                .collect(),
            weight,
            priority,
            allowed_group_ids: groups.iter().map(|group| (*group).to_owned()).collect(),
            enabled: true,
            ..Default::default()
        }),
        secret: "sk-provider".to_owned(),
    }
}

fn view(channels: Vec<pb::SnapshotChannel>) -> CatalogView {
    CatalogView::from_snapshot(pb::Snapshot {
        version: 1,
        channels,
        ..Default::default()
    })
}

fn group(id: &str) -> id::PrincipalGroup {
    id::PrincipalGroup {
        id: id.to_owned(),
        name: id.to_owned(),
        priority: 0,
        completion_cache: false,
    }
}

fn asker<'a>(groups: &'a [id::PrincipalGroup], allowed: &'a [String]) -> Asker<'a> {
    Asker {
        tenant_id: "t1",
        groups,
        superadmin: false,
        allowed_models: allowed,
        providers: &[pb::Provider::Openai],
    }
}

fn ids(candidates: &[Candidate<'_>]) -> Vec<String> {
    candidates
        .iter()
        .map(|candidate| candidate.channel.id.clone())
        .collect()
}

#[test]
fn the_first_group_that_reaches_a_channel_decides_and_priority_orders_it() {
    let view = view(vec![
        channel("vip-low", 1, 1, &["vip"]),
        channel("vip-high", 5, 1, &["vip"]),
        channel("std", 10, 1, &["std"]),
        channel("open", 9, 1, &[]),
    ]);
    let channels = Channels::default();
    let groups = [group("vip"), group("std")];
    let found = channels
        .candidates(&view, &asker(&groups, &[]), "gpt-x")
        .unwrap();
    assert_eq!(ids(&found), ["open", "vip-high", "vip-low"]);
    let std_only = [group("std")];
    let found = channels
        .candidates(&view, &asker(&std_only, &[]), "gpt-x")
        .unwrap();
    assert_eq!(ids(&found), ["std", "open"]);
    let nobody = [group("none")];
    let found = channels
        .candidates(&view, &asker(&nobody, &[]), "gpt-x")
        .unwrap();
    assert_eq!(ids(&found), ["open"], "a channel open to all groups");
    let superadmin = Asker {
        superadmin: true,
        ..asker(&[], &[])
    };
    assert_eq!(
        channels
            .candidates(&view, &superadmin, "gpt-x")
            .unwrap()
            .len(),
        4
    );
}

#[test]
fn models_are_mapped_per_channel_and_limited_by_the_key() {
    let view = view(vec![channel("a", 1, 1, &[])]);
    let channels = Channels::default();
    let found = channels
        .candidates(&view, &asker(&[], &[]), "gpt-y")
        .unwrap();
    assert_eq!(found[0].upstream_model, "a-y");
    let found = channels
        .candidates(&view, &asker(&[], &[]), "gpt-x")
        .unwrap();
    assert_eq!(found[0].upstream_model, "gpt-x");
    let only_x = ["gpt-x".to_owned()];
    assert!(matches!(
        channels.candidates(&view, &asker(&[], &only_x), "gpt-y"),
        Err(NoChannel::UnknownModel)
    ));
    assert!(matches!(
        channels.candidates(&view, &asker(&[], &[]), "claude"),
        Err(NoChannel::UnknownModel)
    ));
    assert_eq!(Channels::models(&view, &asker(&[], &only_x)), ["gpt-x"]);
    assert_eq!(
        Channels::models(&view, &asker(&[], &[])),
        ["gpt-x", "gpt-y"]
    );
}

#[test]
fn only_channels_of_the_endpoints_providers_are_reached() {
    let mut anthropic = channel("claude", 9, 1, &[]);
    if let Some(channel) = anthropic.channel.as_mut() {
        channel.provider = pb::Provider::Anthropic.into();
    }
    let view = view(vec![anthropic, channel("gpt", 1, 1, &[])]);
    let found = Channels::default()
        .candidates(&view, &asker(&[], &[]), "gpt-x")
        .unwrap();
    assert_eq!(ids(&found), ["gpt"]);
}

#[test]
fn weights_share_the_first_place_within_a_priority() {
    let view = view(vec![
        channel("heavy", 1, 3, &[]),
        channel("light", 1, 1, &[]),
        channel("off", 1, 0, &[]),
    ]);
    let channels = Channels::default();
    let mut heavy_first = 0;
    for _ in 0..4000 {
        let found = channels
            .candidates(&view, &asker(&[], &[]), "gpt-x")
            .unwrap();
        assert_eq!(found.len(), 2, "weight 0 takes no traffic");
        heavy_first += usize::from(found[0].channel.id == "heavy");
    }
    assert!(
        (2800..3200).contains(&heavy_first),
        "{heavy_first} of 4000, expected ~3000"
    );
}

#[test]
fn a_failed_channel_cools_down_and_is_skipped() {
    let view = view(vec![channel("a", 5, 1, &[]), channel("b", 1, 1, &[])]);
    let channels = Channels::default();
    let wait = channels.failed("a", Some(Duration::from_secs(30)));
    assert!(wait > Duration::from_secs(29), "{wait:?}");
    let found = channels
        .candidates(&view, &asker(&[], &[]), "gpt-x")
        .unwrap();
    assert_eq!(ids(&found), ["b"]);
    let grown = channels.failed("b", None);
    assert!(grown >= Duration::from_secs(10), "{grown:?}");
    match channels.candidates(&view, &asker(&[], &[]), "gpt-x") {
        Err(NoChannel::CoolingDown(wait)) => assert!(wait <= Duration::from_secs(11), "{wait:?}"),
        _ => panic!("every channel is cooling"),
    }
    assert_eq!(
        Channels::models(&view, &asker(&[], &[])).len(),
        2,
        "still listed"
    );
}

/// A channel of the operator's tenant, offered to `tenants` (all when
/// empty).
fn offered(id: &str, tenants: &[&str]) -> pb::SnapshotChannel {
    let mut entry = channel(id, 100, 1, &["operator-group"]);
    if let Some(channel) = entry.channel.as_mut() {
        channel.tenant_id = "system".to_owned();
        channel.shared_with_all_tenants = tenants.is_empty();
        channel.shared_tenant_ids = tenants.iter().map(|id| (*id).to_owned()).collect();
    }
    entry
}

#[test]
fn operator_channels_serve_a_group_the_tenants_own_channels_do_not() {
    let view = view(vec![
        offered("to-t1", &["t1"]),
        offered("to-all", &[]),
        offered("to-t2", &["t2"]),
        channel("vip", 1, 1, &["vip"]),
    ]);
    let channels = Channels::default();
    let vip = [group("vip"), group("std")];
    let found = channels
        .candidates(&view, &asker(&vip, &[]), "gpt-x")
        .unwrap();
    assert_eq!(
        ids(&found),
        ["vip"],
        "own channels win at equal group priority"
    );
    assert!(!found[0].operator);
    let std = [group("std"), group("vip")];
    let mut found = ids(&channels
        .candidates(&view, &asker(&std, &[]), "gpt-x")
        .unwrap());
    found.sort();
    assert_eq!(
        found,
        ["to-all", "to-t1"],
        "offered whatever the tenant's groups"
    );
    let other = Asker {
        tenant_id: "t3",
        ..asker(&[], &[])
    };
    let found = channels.candidates(&view, &other, "gpt-x").unwrap();
    assert_eq!(
        ids(&found),
        ["to-all"],
        "never one offered to other tenants"
    );
    assert!(found[0].operator);
    assert_eq!(Channels::models(&view, &other), ["gpt-x", "gpt-y"]);
    let owner = Asker {
        tenant_id: "system",
        ..asker(&[], &[])
    };
    assert!(
        matches!(
            channels.candidates(&view, &owner, "gpt-x"),
            Err(NoChannel::UnknownModel)
        ),
        "the owner's own group rules still apply to it"
    );
}
