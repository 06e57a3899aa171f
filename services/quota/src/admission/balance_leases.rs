//! Balance leases: an edge holds a slice of a balance (at most
//! `lease_percent` of what is available) and pays AI requests from it
//! locally, then releases it with what it spent: one ledger debit for the
//! lease, the rest of the hold dropped.
//!
//! Why money stays exact: the slice is a hold like a Check's, so no other
//! request can spend it while the edge has it; the release debits what was
//! used exactly once (the lease id is the ledger entry's reference); an
//! unreleased lease's hold lapses at its expiry, so money is never locked
//! by a crashed edge. What such an edge spent is then not debited: at most
//! one grant, the same bound as request leases.

use gateway_proto::quota::v1 as pb;
use gateway_proto::timestamp_from_micros;

use super::{Admissions, balance_owner, non_negative, require_tenant, ttl};
use crate::error::QuotaError;
use crate::store::holds::Hold;
use crate::store::{Owner, OwnerKind};

/// `b.{uuid}.{tenant}.{USER|KEY}.{owner}`: a release names nothing else.
fn lease_id(uuid: &str, owner: &Owner) -> String {
    format!(
        "b.{uuid}.{}.{}.{}",
        owner.tenant_id,
        owner.kind.as_str(),
        owner.id
    )
}

fn parse(lease_id: &str) -> Result<(&str, Owner), QuotaError> {
    let invalid = || QuotaError::invalid("lease_id", "is not a balance lease id");
    let mut parts = lease_id.split('.');
    let (Some("b"), Some(uuid), Some(tenant), Some(kind), Some(id), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(invalid());
    };
    let kind = match kind {
        "USER" => OwnerKind::User,
        "KEY" => OwnerKind::Key,
        _ => return Err(invalid()),
    };
    if uuid.is_empty() || tenant.is_empty() || id.is_empty() {
        return Err(invalid());
    }
    let owner = Owner {
        tenant_id: tenant.to_owned(),
        kind,
        id: id.to_owned(),
    };
    Ok((uuid, owner))
}

impl Admissions {
    pub async fn lease_balance(
        &self,
        request: &pb::LeaseBalanceRequest,
    ) -> Result<pb::LeaseBalanceResponse, QuotaError> {
        require_tenant(&request.tenant_id)?;
        let owner = balance_owner(&request.tenant_id, request.balance_owner.as_ref())?
            .ok_or_else(|| QuotaError::invalid("balance_owner", "is required"))?;
        let dotted = [&owner.tenant_id, &owner.id];
        if dotted.iter().any(|part| part.contains('.')) {
            return Err(QuotaError::invalid(
                "balance_owner",
                "ids must not contain '.'",
            ));
        }
        if request.requested_micros <= 0 {
            return Err(QuotaError::invalid("requested_micros", "must be positive"));
        }
        let ttl = ttl(
            request.ttl.as_ref(),
            self.settings.lease_ttl,
            self.settings.max_lease_ttl,
            "ttl",
        )?;
        let now = self.clock.now();
        let available = self
            .store
            .balance(&owner)
            .await?
            .saturating_sub(self.store.reserved(&owner, now).await?);
        let granted = request
            .requested_micros
            .min(available.saturating_mul(self.settings.lease_percent) / 100);
        if granted <= 0 {
            return Ok(pb::LeaseBalanceResponse::default());
        }
        let uuid = uuid::Uuid::now_v7().simple().to_string();
        let expire_at = now.saturating_add(ttl);
        match self
            .store
            .hold(&owner, &uuid, granted, expire_at, now)
            .await?
        {
            Hold::Held { .. } => {
                metrics::counter!("quota_balance_leases_total").increment(1);
                tracing::debug!(edge_id = request.edge_id, granted, "balance lease granted");
                Ok(pb::LeaseBalanceResponse {
                    lease_id: lease_id(&uuid, &owner),
                    granted_micros: granted,
                    expire_time: Some(timestamp_from_micros(expire_at)),
                })
            }
            // Another request took the room in between.
            Hold::Insufficient { .. } => Ok(pb::LeaseBalanceResponse::default()),
        }
    }

    pub async fn release_balance_lease(
        &self,
        request: &pb::ReleaseBalanceLeaseRequest,
    ) -> Result<pb::ReleaseBalanceLeaseResponse, QuotaError> {
        let (uuid, owner) = parse(&request.lease_id)?;
        let used = non_negative(request.used_micros, "used_micros")?;
        let balance = self
            .store
            .settle(&owner, uuid, &request.lease_id, used)
            .await?;
        Ok(pb::ReleaseBalanceLeaseResponse {
            balance_micros: balance,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_ids_name_their_owner_and_nothing_else_parses() {
        let owner = Owner {
            tenant_id: "t1".to_owned(),
            kind: OwnerKind::Key,
            id: "k1".to_owned(),
        };
        let id = lease_id("u1", &owner);
        let (uuid, parsed) = parse(&id).unwrap();
        assert_eq!(
            (uuid, parsed.id.as_str(), parsed.kind),
            ("u1", "k1", OwnerKind::Key)
        );
        for bad in [
            "",
            "b.u1.t1.USER",
            "b.u1.t1.ROBOT.k1",
            "l.u1.t1.USER.k1",
            "b..t1.USER.k1",
            "b.u1.t1.USER.k1.x",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
