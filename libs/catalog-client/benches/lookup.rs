//! The edge's hot-path lookups on a large catalog: the API for a request
//! path and the price of a request.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use gateway_catalog_client::CatalogView;
use gateway_proto::catalog::v1 as pb;
use std::hint::black_box;

fn catalog(tenants: usize, apis_per_tenant: usize) -> CatalogView {
    let mut snapshot = pb::Snapshot {
        version: 1,
        ..Default::default()
    };
    for tenant in 0..tenants {
        for api in 0..apis_per_tenant {
            snapshot.apis.push(pb::SnapshotApi {
                api: Some(pb::Api {
                    id: format!("01930000-0000-7000-8000-{tenant:06}{api:06}"),
                    tenant_id: format!("01930000-0000-7000-8000-{tenant:012}"),
                    slug: format!("api-{api}"),
                    ..Default::default()
                }),
                upstream_auth_secret: String::new(),
            });
        }
    }
    CatalogView::from_snapshot(snapshot)
}

fn lookups(criterion: &mut Criterion) {
    let view = catalog(1_000, 10);
    let tenant = "01930000-0000-7000-8000-000000000500";
    criterion.bench_function("snapshot/api_by_tenant_and_slug (10k apis)", |bench| {
        bench.iter(|| black_box(view.api(black_box(tenant), black_box("api-7"))).is_some());
    });
    criterion.bench_function("snapshot/api_miss (10k apis)", |bench| {
        bench.iter(|| black_box(view.api(black_box(tenant), black_box("nope"))).is_none());
    });
}

criterion_group!(benches, lookups);
criterion_main!(benches);
