//! Which channels may serve a request, in the order to try them: the
//! caller's groups by descending priority (a key with a group has only
//! that one; a SUPERADMIN's key ignores groups), and in the first group
//! that reaches an enabled channel serving the model, its channels by
//! descending channel priority, in weighted random order within one
//! priority. Operator channels (another tenant's, offered to the caller's)
//! serve a group that reaches none of the tenant's own channels for the
//! model: own channels win at equal group priority. A channel in cooldown (a failed attempt ejects it through the
//! same passive health the generic path uses: `Retry-After` when the
//! provider sent one, else a growing period) is skipped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use gateway_catalog_client::CatalogView;
use gateway_proto::catalog::v1 as pb;
use gateway_proto::identity::v1 as id;

use crate::policy::TargetState;

/// Who asks, as channel selection needs it.
pub struct Asker<'a> {
    pub tenant_id: &'a str,
    /// Descending priority, as identity orders them.
    pub groups: &'a [id::PrincipalGroup],
    pub superadmin: bool,
    /// Empty = every model.
    pub allowed_models: &'a [String],
    /// The providers whose channels the endpoint can reach (its protocol).
    pub providers: &'a [pb::Provider],
}

impl Asker<'_> {
    pub fn may_use(&self, model: &str) -> bool {
        self.allowed_models.is_empty() || self.allowed_models.iter().any(|allowed| allowed == model)
    }
}

/// One channel to try.
pub struct Candidate<'a> {
    pub entry: &'a pb::SnapshotChannel,
    pub channel: &'a pb::Channel,
    /// The model name sent to this channel (after `model_mapping`).
    pub upstream_model: &'a str,
    pub state: Arc<TargetState>,
    /// An operator channel: priced at the global prices.
    pub operator: bool,
}

/// Nothing can serve the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoChannel {
    /// No channel this caller may reach serves the model (404).
    UnknownModel,
    /// Every candidate is cooling down (503 with Retry-After).
    CoolingDown(Duration),
}

/// Channel runtime state, kept across snapshot updates by channel id.
#[derive(Default)]
pub struct Channels {
    states: Mutex<HashMap<String, Arc<TargetState>>>,
}

impl Channels {
    pub fn state(&self, channel_id: &str) -> Arc<TargetState> {
        Arc::clone(
            self.states
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(channel_id.to_owned())
                .or_default(),
        )
    }

    /// A failed attempt on a channel: cooled down for the provider's
    /// `retry_after`, else for a period that grows with each failure.
    pub fn failed(&self, channel_id: &str, retry_after: Option<Duration>) -> Duration {
        let state = self.state(channel_id);
        let now = Instant::now();
        let grown = state.health.observed(true, 1, now).unwrap_or_default();
        if let Some(wait) = retry_after {
            state.health.eject_for(wait, now);
        }
        state
            .health
            .ejected_until(now)
            .map_or(grown, |until| until - now)
    }

    pub fn succeeded(&self, channel_id: &str) {
        self.state(channel_id)
            .health
            .observed(false, 1, Instant::now());
    }

    /// The channels to try for `model`, best first.
    pub fn candidates<'a>(
        &self,
        view: &'a CatalogView,
        asker: &Asker<'_>,
        model: &str,
    ) -> Result<Vec<Candidate<'a>>, NoChannel> {
        let (chosen, operator) = reachable(view, asker, model).ok_or(NoChannel::UnknownModel)?;
        let now = Instant::now();
        let mut candidates: Vec<Candidate<'a>> = order(chosen)
            .into_iter()
            .map(|(entry, channel)| Candidate {
                entry,
                channel,
                upstream_model: channel
                    .model_mapping
                    .get(model)
                    .map_or_else(|| served_name(channel, model), String::as_str),
                state: self.state(&channel.id),
                operator,
            })
            .collect();
        // Cooling channels are skipped; when all are, the soonest back
        // says how long to wait.
        let back = candidates
            .iter()
            .map(|candidate| candidate.state.health.ejected_until(now))
            .min()
            .flatten();
        candidates.retain(|candidate| candidate.state.health.ejected_until(now).is_none());
        match back {
            Some(until) if candidates.is_empty() => Err(NoChannel::CoolingDown(until - now)),
            _ => Ok(candidates),
        }
    }

    /// Every model this caller can reach through some channel (cooling
    /// or not: a cooling channel is back soon), sorted.
    pub fn models(view: &CatalogView, asker: &Asker<'_>) -> Vec<String> {
        let mut models: Vec<String> = view
            .reachable_channels(asker.tenant_id)
            .flat_map(|channel| channel.models.iter())
            .filter(|model| reachable(view, asker, model).is_some())
            .cloned()
            .collect();
        models.sort();
        models.dedup();
        models
    }
}

/// The channels of the first of the caller's groups that reaches an
/// enabled channel serving `model`, and whether they are operator
/// channels; `None` when none does (or the key may not use the model).
fn reachable<'a>(
    view: &'a CatalogView,
    asker: &Asker<'_>,
    model: &str,
) -> Option<(Vec<Serving<'a>>, bool)> {
    if !asker.may_use(model) {
        return None;
    }
    let usable = |entries: &mut dyn Iterator<Item = &'a pb::SnapshotChannel>| -> Vec<Serving<'a>> {
        entries
            .filter_map(|entry| Some((entry, entry.channel.as_ref()?)))
            .filter(|(_, channel)| {
                channel.weight > 0 && asker.providers.contains(&channel.provider())
            })
            .collect()
    };
    let own = usable(&mut view.channels_for(asker.tenant_id, model));
    let shared = usable(&mut view.shared_channels_for(asker.tenant_id, model));
    first_group(&own, &shared, asker)
}

/// The model name as the channel's list spells it (a borrowed `&str` that
/// lives as long as the view).
fn served_name<'a>(channel: &'a pb::Channel, model: &str) -> &'a str {
    channel
        .models
        .iter()
        .find(|served| *served == model)
        .map_or("", String::as_str)
}

type Serving<'a> = (&'a pb::SnapshotChannel, &'a pb::Channel);

/// The channels of the first of the caller's groups that reaches any: its
/// own channels open to the group, else the operator channels (offered to
/// the whole tenant, whatever its groups).
fn first_group<'a>(
    own: &[Serving<'a>],
    shared: &[Serving<'a>],
    asker: &Asker<'_>,
) -> Option<(Vec<Serving<'a>>, bool)> {
    let operator = || (!shared.is_empty()).then(|| (shared.to_vec(), true));
    if asker.superadmin {
        return (!own.is_empty())
            .then(|| (own.to_vec(), false))
            .or_else(operator);
    }
    let open = |channel: &pb::Channel, group: Option<&str>| {
        channel.allowed_group_ids.is_empty()
            || group.is_some_and(|group| channel.allowed_group_ids.iter().any(|id| id == group))
    };
    let groups: Vec<Option<&str>> = if asker.groups.is_empty() {
        vec![None]
    } else {
        asker
            .groups
            .iter()
            .map(|group| Some(group.id.as_str()))
            .collect()
    };
    groups.into_iter().find_map(|group| {
        let reachable: Vec<Serving<'a>> = own
            .iter()
            .copied()
            .filter(|(_, channel)| open(channel, group))
            .collect();
        (!reachable.is_empty())
            .then_some((reachable, false))
            .or_else(operator)
    })
}

/// Descending priority; within one priority, a weighted random order
/// (each next channel drawn with probability proportional to its weight:
/// Efraimidis-Spirakis keys).
fn order(mut channels: Vec<Serving<'_>>) -> Vec<Serving<'_>> {
    let mut keyed: Vec<(i32, f64, Serving<'_>)> = channels
        .drain(..)
        .map(|serving| {
            let weight = f64::from(serving.1.weight.max(1));
            let key = fastrand::f64().max(f64::MIN_POSITIVE).powf(1.0 / weight);
            (serving.1.priority, key, serving)
        })
        .collect();
    keyed.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.total_cmp(&a.1)));
    keyed.into_iter().map(|(_, _, serving)| serving).collect()
}

#[cfg(test)]
mod tests;
