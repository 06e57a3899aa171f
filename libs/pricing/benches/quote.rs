//! `PriceTable::quote` on a production-sized table: 1000 global prices,
//! 100 tenants with 20 prices each, 50 group overrides over 10 groups.
//! Ids are UUID-length strings and model names realistic in length, since
//! hashing cost grows with key length.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use gateway_pricing::{Price, PriceSource, PriceTable, UNIT_MULTIPLIER_PPM, Usage, cost_micros};

const GLOBAL_MODELS: usize = 1000;
const TENANTS: usize = 100;
const PRICES_PER_TENANT: usize = 20;
const GROUPS: usize = 10;
const OVERRIDES_PER_GROUP: usize = 5;

fn uuid_like(kind: u32, number: usize) -> String {
    format!("0196{kind:04x}-0000-7000-8000-{number:012x}")
}

fn model(number: usize) -> String {
    format!("vendor-model-{number:04}-2025-01")
}

fn price(id: String, micros: i64) -> Price {
    Price {
        id,
        input_micros_per_million: micros,
        output_micros_per_million: 4 * micros,
        cached_input_micros_per_million: Some(micros / 10),
    }
}

/// Tenant `t` prices models `t * 10 .. t * 10 + 20`; group `g` (of tenant 0)
/// overrides models `g * 5 .. g * 5 + 5`, so for tenant 0 and group 0:
/// model 0 is an override, model 7 a tenant price, model 500 global only.
fn table() -> PriceTable {
    let mut table = PriceTable::new();
    for number in 0..GLOBAL_MODELS {
        table.insert_global_price(model(number), price(uuid_like(1, number), 2_500_000));
    }
    for tenant in 0..TENANTS {
        for offset in 0..PRICES_PER_TENANT {
            let number = tenant * 10 + offset;
            let id = uuid_like(2, tenant * PRICES_PER_TENANT + offset);
            table.insert_tenant_price(uuid_like(3, tenant), model(number), price(id, 2_000_000));
        }
    }
    for group in 0..GROUPS {
        for offset in 0..OVERRIDES_PER_GROUP {
            let number = group * OVERRIDES_PER_GROUP + offset;
            let id = uuid_like(4, number);
            table.insert_group_price(uuid_like(5, group), model(number), price(id, 1_500_000));
        }
        table.insert_group_multiplier(uuid_like(5, group), 1_250_000);
    }
    table
}

fn quote(criterion: &mut Criterion) {
    let table = table();
    let tenant_id = uuid_like(3, 0);
    let group_id = uuid_like(5, 0);
    let usage = Usage {
        prompt_tokens: 1_234,
        completion_tokens: 567,
        cached_tokens: 890,
    };
    let cases = [
        ("global_hit", model(500), PriceSource::Global),
        ("tenant_hit", model(7), PriceSource::Tenant),
        ("override_hit", model(0), PriceSource::GroupOverride),
    ];

    let mut group = criterion.benchmark_group("quote");
    for (name, model, source) in &cases {
        // Measure what the name claims.
        let quote = table
            .quote(&tenant_id, Some(&group_id), model, &usage)
            .unwrap();
        assert_eq!(quote.source, *source);
        group.bench_function(*name, |bencher| {
            bencher.iter(|| {
                table.quote(
                    black_box(&tenant_id),
                    black_box(Some(group_id.as_str())),
                    black_box(model),
                    black_box(&usage),
                )
            })
        });
    }
    group.finish();

    let price = price(uuid_like(1, 0), 2_500_000);
    criterion.bench_function("cost_micros", |bencher| {
        bencher.iter(|| {
            cost_micros(
                black_box(&price),
                black_box(UNIT_MULTIPLIER_PPM),
                black_box(&usage),
            )
        })
    });
}

criterion_group!(benches, quote);
criterion_main!(benches);
