//! Plugins: code an embedding binary adds to the edge's request path, with
//! the hooks of the systems our users come from (startup, request,
//! response, error, shutdown). The edge's own access rules (maintenance
//! mode, client IP lists) are plugins too, in [`crate::access`].

use std::net::IpAddr;

use http::{HeaderMap, Method, Response, StatusCode};

use crate::body::EdgeBody;
use crate::policy::CompiledApi;

/// What a plugin sees of a request: after the API and the caller are
/// known, before quota is spent or the upstream called.
pub struct RequestInfo<'a> {
    pub request_id: &'a str,
    pub method: &'a Method,
    /// The normalised path, `/{tenant}/{api}/...`.
    pub path: &'a str,
    pub headers: &'a HeaderMap,
    pub remote_ip: IpAddr,
    pub tenant_id: &'a str,
    pub api: &'a CompiledApi,
}

/// A request that has its answer.
pub struct Answered<'a> {
    pub request_id: &'a str,
    pub api: &'a CompiledApi,
    pub status: StatusCode,
}

/// A plugin. Every hook has a default that does nothing, so a plugin
/// implements only what it needs. Hooks run on the request path: keep
/// them fast and never block.
pub trait EdgePlugin: Send + Sync {
    fn name(&self) -> &str;

    /// Once, before the edge takes traffic.
    fn on_startup(&self) {}

    /// Before admission; an answer ends the request there (no quota spent,
    /// no upstream called).
    fn on_request(&self, _request: &RequestInfo<'_>) -> Option<Response<EdgeBody>> {
        None
    }

    /// The upstream's response head, on its way to the client.
    fn on_response(&self, _answered: &Answered<'_>, _headers: &mut HeaderMap) {}

    /// The edge answered with an error of its own (a problem response)
    /// after the API was known.
    fn on_error(&self, _answered: &Answered<'_>) {}

    /// Once, after the edge has drained.
    fn on_shutdown(&self) {}
}

/// The plugins of one edge, in order.
#[derive(Default)]
pub struct Plugins(Vec<Box<dyn EdgePlugin>>);

impl Plugins {
    /// The edge's built-in plugins, then `extra` in the order given.
    pub fn with_builtins(extra: Vec<Box<dyn EdgePlugin>>) -> Self {
        let mut plugins: Vec<Box<dyn EdgePlugin>> = vec![
            Box::new(crate::access::Maintenance),
            Box::new(crate::access::ClientAddresses),
        ];
        plugins.extend(extra);
        Self(plugins)
    }

    pub fn startup(&self) {
        for plugin in &self.0 {
            tracing::debug!(plugin = plugin.name(), "plugin starting");
            plugin.on_startup();
        }
    }

    pub fn request(&self, request: &RequestInfo<'_>) -> Option<Response<EdgeBody>> {
        self.0.iter().find_map(|plugin| plugin.on_request(request))
    }

    pub fn response(&self, answered: &Answered<'_>, headers: &mut HeaderMap) {
        for plugin in &self.0 {
            plugin.on_response(answered, headers);
        }
    }

    pub fn error(&self, answered: &Answered<'_>) {
        for plugin in &self.0 {
            plugin.on_error(answered);
        }
    }

    pub fn shutdown(&self) {
        for plugin in &self.0 {
            plugin.on_shutdown();
        }
    }
}
