//! No Docker engine or cluster runs here, so the deployment files are kept
//! honest by loading them: every service's environment in
//! `docker-compose.yml` and `deploy/kubernetes/gateway.yaml` must load as
//! that binary's configuration, with no unknown `GATEWAY_*` key, and the
//! Dockerfile must build every binary they run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashMap};

use gateway_runtime::config;
use gateway_runtime::process::ProcessConfig;
use serde_norway::Value;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{ROOT}/{path}"))
        .unwrap_or_else(|error| panic!("{path}: {error}"))
}

/// Loads and validates `env` as `C`, failing on any unknown or badly
/// valued key.
fn check_config<C: ProcessConfig>(origin: &str, env: &HashMap<String, String>) {
    let known: BTreeSet<String> = config::env_names::<C>().unwrap().into_iter().collect();
    for name in env
        .keys()
        .filter(|name| name.starts_with(config::ENV_PREFIX))
    {
        assert!(
            known.contains(name),
            "{origin}: {name} is not a configuration key"
        );
    }
    let loaded = config::load::<C>(None, env).unwrap_or_else(|error| panic!("{origin}: {error}"));
    assert!(
        loaded.unknown_env.is_empty(),
        "{origin}: unknown {:?}",
        loaded.unknown_env
    );
}

/// Checks `env` against the configuration of `binary`.
fn check_binary(origin: &str, binary: &str, env: &HashMap<String, String>) {
    match binary {
        "gateway-identity" => check_config::<gateway_identity::BinaryConfig>(origin, env),
        "gateway-catalog" => check_config::<gateway_catalog::BinaryConfig>(origin, env),
        "gateway-quota" => check_config::<gateway_quota::BinaryConfig>(origin, env),
        "gateway-usage" => check_config::<gateway_usage::BinaryConfig>(origin, env),
        "gateway-edge" => check_config::<gateway_edge::BinaryConfig>(origin, env),
        "gateway-console" => check_config::<gateway_console::BinaryConfig>(origin, env),
        "gatewayd" => check_config::<gatewayd::SuiteConfig>(origin, env),
        other => panic!("{origin}: runs {other:?}, which is not a gateway binary"),
    }
}

/// Resolves compose interpolation (`${NAME}`, `${NAME:-default}`,
/// `${NAME:?message}`) as `docker compose` would with `shell` set.
fn interpolate(value: &str, shell: &HashMap<&str, &str>) -> String {
    let Some(inner) = value
        .strip_prefix("${")
        .and_then(|rest| rest.strip_suffix('}'))
    else {
        return value.to_owned();
    };
    let (name, fallback) = match inner.find(":-").or_else(|| inner.find(":?")) {
        Some(index) => (&inner[..index], Some(&inner[index..])),
        None => (inner, None),
    };
    match (shell.get(name), fallback) {
        (Some(set), _) => (*set).to_owned(),
        (None, Some(fallback)) if fallback.starts_with(":-") => fallback[2..].to_owned(),
        _ => panic!("compose needs {name} set"),
    }
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        Value::Bool(flag) => flag.to_string(),
        other => panic!("unexpected environment value {other:?}"),
    }
}

#[test]
fn compose_services_use_real_config_keys() {
    let mut compose: Value = serde_norway::from_str(&read("docker-compose.yml")).unwrap();
    compose.apply_merge().unwrap();
    let shell = HashMap::from([
        ("GATEWAY_BOOTSTRAP_PASSWORD", "a-long-test-password"),
        (
            "GATEWAY_MASTER_KEY",
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ),
    ]);
    let services = compose["services"].as_mapping().unwrap();
    let mut binaries = BTreeSet::new();
    for (name, service) in services {
        let name = name.as_str().unwrap();
        if service["image"].as_str() != Some("gateway-suite:local") {
            continue; // third-party images
        }
        let binary = service["command"][0].as_str().unwrap();
        binaries.insert(binary.to_owned());
        let env: HashMap<String, String> = service["environment"]
            .as_mapping()
            .unwrap_or_else(|| panic!("compose service {name} has no environment map"))
            .iter()
            .map(|(key, value)| {
                (
                    key.as_str().unwrap().to_owned(),
                    interpolate(&scalar(value), &shell),
                )
            })
            .collect();
        check_binary(&format!("docker-compose.yml service {name}"), binary, &env);

        // The published port is the one the service listens on.
        if let Some(listen) = env.iter().find(|(key, _)| key.ends_with("_LISTEN_ADDR")) {
            let port = listen.1.rsplit(':').next().unwrap();
            let published: Vec<String> = service["ports"]
                .as_sequence()
                .map(|ports| ports.iter().map(scalar).collect())
                .unwrap_or_default();
            assert!(
                published
                    .iter()
                    .any(|mapping| mapping.ends_with(&format!(":{port}"))),
                "compose service {name} listens on {port} but publishes {published:?}"
            );
        }
    }
    let expected: BTreeSet<String> = [
        "gateway-identity",
        "gateway-catalog",
        "gateway-quota",
        "gateway-usage",
        "gateway-edge",
        "gateway-console",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(
        binaries, expected,
        "compose runs each service as its own container"
    );
    assert!(services.contains_key("postgres") && services.contains_key("redis"));
    assert!(services.contains_key("otel-collector") && services.contains_key("jaeger"));
}

#[test]
fn kubernetes_deployments_use_real_config_keys() {
    let text = read("deploy/kubernetes/gateway.yaml");
    let documents: Vec<Value> = serde_norway::Deserializer::from_str(&text)
        .map(|document| serde::Deserialize::deserialize(document).unwrap())
        .collect();
    let secrets: HashMap<String, String> = documents
        .iter()
        .filter(|document| document["kind"] == "Secret")
        .flat_map(|secret| secret["stringData"].as_mapping().unwrap().clone())
        .map(|(key, value)| (key.as_str().unwrap().to_owned(), scalar(&value)))
        .collect();
    let mut deployments = 0;
    for document in documents
        .iter()
        .filter(|document| document["kind"] == "Deployment")
    {
        deployments += 1;
        let name = document["metadata"]["name"].as_str().unwrap();
        for container in document["spec"]["template"]["spec"]["containers"]
            .as_sequence()
            .unwrap()
        {
            let binary = container["command"][0].as_str().unwrap();
            let env: HashMap<String, String> = container["env"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|variable| {
                    let key = variable["name"].as_str().unwrap().to_owned();
                    let value = match variable.get("value") {
                        Some(value) => scalar(value),
                        None => {
                            let secret_key = variable["valueFrom"]["secretKeyRef"]["key"]
                                .as_str()
                                .unwrap();
                            secrets
                                .get(secret_key)
                                .unwrap_or_else(|| {
                                    panic!("{name}: secret key {secret_key} is not defined")
                                })
                                .clone()
                        }
                    };
                    (key, value)
                })
                .collect();
            check_binary(&format!("kubernetes deployment {name}"), binary, &env);
        }
    }
    assert_eq!(deployments, 6);
}

#[test]
fn dockerfile_builds_every_binary_the_deployments_run() {
    let dockerfile = read("Dockerfile");
    for binary in [
        "gatewayd",
        "gatewayctl",
        "gateway-identity",
        "gateway-catalog",
        "gateway-quota",
        "gateway-usage",
        "gateway-edge",
        "gateway-console",
    ] {
        assert!(
            dockerfile.contains(&format!("--bin {binary} "))
                || dockerfile.contains(&format!("--bin {binary}\n")),
            "Dockerfile does not build {binary}"
        );
        assert!(
            dockerfile.contains(&format!("target/release/{binary} "))
                || dockerfile.contains(&format!("target/release/{binary}\n")),
            "Dockerfile does not copy {binary}"
        );
    }
}

#[test]
fn compose_interpolation_is_resolved_like_docker() {
    let shell = HashMap::from([("SET", "value")]);
    assert_eq!(interpolate("${SET:?needed}", &shell), "value");
    assert_eq!(interpolate("${UNSET:-fallback}", &shell), "fallback");
    assert_eq!(interpolate("plain", &shell), "plain");
}
