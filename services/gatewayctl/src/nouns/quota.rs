//! Quota's configuration nouns: plans and group rate-limit rules.

use gateway_proto::quota::v1 as pb;

use super::{all_pages, mask, present};
use crate::ctx::Ctx;
use crate::error::CliResult;
use crate::resolve::RefKind;
use crate::resource::{Filter, Ref, Resource};

pub struct Plans;

impl Resource for Plans {
    type Message = pb::Plan;
    const NOUN: &'static str = "plan";
    const NAME_FIELD: Option<&'static str> = Some("name");
    const COLUMNS: &'static [(&'static str, &'static str)] = &[
        ("ID", "id"),
        ("NAME", "name"),
        ("REQ/MIN", "requests_per_minute"),
        ("REQ/DAY", "requests_per_day"),
        ("TOKENS/MIN", "tokens_per_minute"),
        ("SPEND/DAY", "spend_per_day_micros"),
        ("SPEND/MONTH", "spend_per_month_micros"),
        ("CONCURRENCY", "max_concurrency"),
    ];

    fn id(message: &pb::Plan) -> &str {
        &message.id
    }
    fn name(message: &pb::Plan) -> String {
        message.name.clone()
    }
    async fn list(ctx: &Ctx, filter: &Filter) -> CliResult<Vec<pb::Plan>> {
        let request = pb::ListPlansRequest {
            tenant_id: filter.tenant_id.clone().unwrap_or_default(),
            ..Default::default()
        };
        Ok(all_pages!(ctx.quota(), list_plans, request, plans))
    }
    async fn create(
        ctx: &Ctx,
        plan: pb::Plan,
        _secret: Option<String>,
    ) -> CliResult<(pb::Plan, Option<String>)> {
        let answer = ctx
            .quota()
            .create_plan(pb::CreatePlanRequest { plan: Some(plan) })
            .await?;
        Ok((present(answer.into_inner().plan, "plan")?, None))
    }
    async fn update(
        ctx: &Ctx,
        plan: pb::Plan,
        paths: Vec<String>,
        _secret: Option<String>,
    ) -> CliResult<pb::Plan> {
        let request = pb::UpdatePlanRequest {
            plan: Some(plan),
            update_mask: mask(paths),
        };
        present(
            ctx.quota().update_plan(request).await?.into_inner().plan,
            "plan",
        )
    }
    async fn delete(ctx: &Ctx, id: &str) -> CliResult<()> {
        ctx.quota()
            .delete_plan(pb::DeletePlanRequest { id: id.into() })
            .await?;
        Ok(())
    }
}

pub struct Rules;

impl Resource for Rules {
    type Message = pb::RateLimitRule;
    const NOUN: &'static str = "rule";
    const NAME_FIELD: Option<&'static str> = Some("name");
    const COLUMNS: &'static [(&'static str, &'static str)] = &[
        ("ID", "id"),
        ("NAME", "name"),
        ("GROUP", "group_id"),
        ("DIMENSION", "dimension"),
        ("WINDOW", "window"),
        ("LIMIT", "limit"),
        ("ENABLED", "enabled"),
    ];
    const REFS: &'static [Ref] = &[Ref {
        flag: "group",
        field: "group_id",
        kind: RefKind::Group,
        many: false,
    }];
    const FILTERS: &'static [&'static str] = &["group"];

    fn id(message: &pb::RateLimitRule) -> &str {
        &message.id
    }
    fn name(message: &pb::RateLimitRule) -> String {
        message.name.clone()
    }
    async fn list(ctx: &Ctx, filter: &Filter) -> CliResult<Vec<pb::RateLimitRule>> {
        let request = pb::ListRateLimitRulesRequest {
            tenant_id: filter.tenant_id.clone().unwrap_or_default(),
            group_id: filter.group_id.clone().unwrap_or_default(),
            ..Default::default()
        };
        Ok(all_pages!(
            ctx.quota(),
            list_rate_limit_rules,
            request,
            rate_limit_rules
        ))
    }
    async fn create(
        ctx: &Ctx,
        rule: pb::RateLimitRule,
        _secret: Option<String>,
    ) -> CliResult<(pb::RateLimitRule, Option<String>)> {
        let request = pb::CreateRateLimitRuleRequest {
            rate_limit_rule: Some(rule),
        };
        let answer = ctx.quota().create_rate_limit_rule(request).await?;
        Ok((present(answer.into_inner().rate_limit_rule, "rule")?, None))
    }
    async fn update(
        ctx: &Ctx,
        rule: pb::RateLimitRule,
        paths: Vec<String>,
        _secret: Option<String>,
    ) -> CliResult<pb::RateLimitRule> {
        let request = pb::UpdateRateLimitRuleRequest {
            rate_limit_rule: Some(rule),
            update_mask: mask(paths),
        };
        present(
            ctx.quota()
                .update_rate_limit_rule(request)
                .await?
                .into_inner()
                .rate_limit_rule,
            "rule",
        )
    }
    async fn delete(ctx: &Ctx, id: &str) -> CliResult<()> {
        ctx.quota()
            .delete_rate_limit_rule(pb::DeleteRateLimitRuleRequest { id: id.into() })
            .await?;
        Ok(())
    }
}
