//! Any RPC of the contracts called by its full name with a JSON request
//! (proto3 JSON, through the descriptor set), so the matrix can name every
//! RPC in one table rather than one typed client call each.

use std::sync::OnceLock;

use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, MethodDescriptor};
use serde_json::Value;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;

pub fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(gateway_proto::FILE_DESCRIPTOR_SET).expect("descriptor set")
    })
}

/// `gateway.identity.v1.IdentityService/GetUser` → its descriptor.
pub fn method(rpc: &str) -> MethodDescriptor {
    let (service, name) = rpc.split_once('/').expect("service/method");
    pool()
        .get_service_by_name(service)
        .and_then(|service| service.methods().find(|method| method.name() == name))
        .unwrap_or_else(|| panic!("no rpc {rpc} in proto/"))
}

/// Every RPC of the suite's own services, as `package.Service/Method`.
pub fn every_rpc() -> Vec<String> {
    pool()
        .services()
        .filter(|service| service.package_name().starts_with("gateway."))
        .flat_map(|service| {
            let prefix = service.full_name().to_owned();
            service
                .methods()
                .map(|method| format!("{prefix}/{}", method.name()))
                .collect::<Vec<_>>()
        })
        .collect()
}

struct DynamicCodec(MessageDescriptor);
struct DynamicEncoder;
struct DynamicDecoder(MessageDescriptor);

impl Codec for DynamicCodec {
    type Encode = DynamicMessage;
    type Decode = DynamicMessage;
    type Encoder = DynamicEncoder;
    type Decoder = DynamicDecoder;

    fn encoder(&mut self) -> DynamicEncoder {
        DynamicEncoder
    }

    fn decoder(&mut self) -> DynamicDecoder {
        DynamicDecoder(self.0.clone())
    }
}

impl Encoder for DynamicEncoder {
    type Item = DynamicMessage;
    type Error = Status;

    fn encode(&mut self, item: DynamicMessage, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst)
            .map_err(|error| Status::internal(error.to_string()))
    }
}

impl Decoder for DynamicDecoder {
    type Item = DynamicMessage;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<DynamicMessage>, Status> {
        DynamicMessage::decode(self.0.clone(), src)
            .map(Some)
            .map_err(|error| Status::internal(error.to_string()))
    }
}

/// Who calls: `("authorization", "Bearer …")` or `("x-admin-key", …)`.
pub type Credential = (&'static str, String);

/// Calls `rpc` with `request` (proto3 JSON); the answer as JSON. A server
/// stream answers with its first message, or its first error.
pub async fn call(
    channel: &Channel,
    credential: &Credential,
    rpc: &str,
    request: &Value,
) -> Result<Value, Status> {
    let method = method(rpc);
    let message = DynamicMessage::deserialize(method.input(), request)
        .unwrap_or_else(|error| panic!("{rpc}: the request {request} does not fit: {error}"));
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|error| Status::unavailable(error.to_string()))?;
    let path = http::uri::PathAndQuery::try_from(format!("/{rpc}")).expect("path");
    let codec = DynamicCodec(method.output());
    let answer = if method.is_server_streaming() || method.is_client_streaming() {
        // A stream of the one request; the first answer, or the first error.
        let request = authorized(tokio_stream::once(message), credential);
        let mut stream = grpc.streaming(request, path, codec).await?.into_inner();
        let first = tokio::time::timeout(std::time::Duration::from_secs(5), stream.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no first message"))??;
        match first {
            Some(first) => first,
            None => return Ok(Value::Null),
        }
    } else {
        grpc.unary(authorized(message, credential), path, codec)
            .await?
            .into_inner()
    };
    Ok(serde_json::to_value(&answer).expect("answers serialize"))
}

fn authorized<T>(message: T, credential: &Credential) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        credential.0,
        credential.1.parse().expect("ascii credential"),
    );
    request
}
