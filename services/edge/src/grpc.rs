//! gRPC clients of the control plane: lazy channels, and the edge's
//! credential (the admin key) on every call.

use std::time::Duration;

use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// Adds the edge's credential header to every call.
#[derive(Clone)]
pub struct Credential {
    name: Option<AsciiMetadataKey>,
    value: Option<AsciiMetadataValue>,
}

impl Interceptor for Credential {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let (Some(name), Some(value)) = (&self.name, &self.value) {
            request.metadata_mut().insert(name.clone(), value.clone());
        }
        // The call is a child of the edge's stage span that makes it.
        gateway_telemetry::inject_grpc_metadata(request.metadata_mut());
        Ok(request)
    }
}

pub type Authed = InterceptedService<Channel, Credential>;

/// An interceptor for `(header, value)`; an invalid pair sends nothing
/// (the service then refuses the call, which is logged there).
pub fn authed(credential: (String, String)) -> Credential {
    Credential {
        name: AsciiMetadataKey::from_bytes(credential.0.as_bytes()).ok(),
        value: AsciiMetadataValue::try_from(credential.1.as_str()).ok(),
    }
}

/// A channel that connects on first use and reconnects by itself.
pub fn channel(url: &str, timeout: Duration) -> Result<Channel, String> {
    Ok(Endpoint::from_shared(url.to_owned())
        .map_err(|error| format!("{url}: {error}"))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .connect_lazy())
}
