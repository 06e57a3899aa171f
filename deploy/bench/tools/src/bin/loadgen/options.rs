//! Command-line options; every one is used, an unknown one is an error.

use std::time::Duration;

use anyhow::{Context as _, bail};
use http::{HeaderName, HeaderValue, Uri};

pub struct Options {
    /// The request target: the URL's path and query.
    pub target: Uri,
    /// `host:port` to connect to.
    pub authority: String,
    pub rate: f64,
    pub seconds: Duration,
    pub warmup: Duration,
    pub connections: usize,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Options {
    pub fn parse(mut args: impl Iterator<Item = String>) -> anyhow::Result<Self> {
        let mut url = None;
        let mut rate = None;
        let mut seconds = 10.0;
        let mut warmup = 2.0;
        let mut connections = 64;
        let mut headers = Vec::new();
        while let Some(arg) = args.next() {
            let value = args
                .next()
                .with_context(|| format!("{arg} takes a value"))?;
            match arg.as_str() {
                "--url" => url = Some(value.parse::<Uri>().context("--url")?),
                "--rate" => rate = Some(value.parse::<f64>().context("--rate")?),
                "--seconds" => seconds = value.parse().context("--seconds")?,
                "--warmup" => warmup = value.parse().context("--warmup")?,
                "--connections" => connections = value.parse().context("--connections")?,
                "--header" => headers.push(header(&value)?),
                other => bail!("unknown option {other}"),
            }
        }
        let url = url.context("--url is required")?;
        let rate = rate.context("--rate is required")?;
        if !(rate.is_finite() && rate > 0.0) {
            bail!("--rate must be a positive number of requests per second");
        }
        if url.scheme_str() != Some("http") {
            bail!("--url must be http:// (plain HTTP/1.1)");
        }
        let authority = url.authority().context("--url needs a host")?;
        let authority = format!(
            "{}:{}",
            authority.host(),
            authority.port_u16().unwrap_or(80)
        );
        if connections == 0 {
            bail!("--connections must be at least 1");
        }
        let target = url
            .path_and_query()
            .map_or("/", |target| target.as_str())
            .parse()?;
        Ok(Self {
            target,
            authority,
            rate,
            seconds: Duration::try_from_secs_f64(seconds).context("--seconds")?,
            warmup: Duration::try_from_secs_f64(warmup).context("--warmup")?,
            connections,
            headers,
        })
    }
}

fn header(text: &str) -> anyhow::Result<(HeaderName, HeaderValue)> {
    let (name, value) = text
        .split_once(':')
        .with_context(|| format!("--header {text:?}: expected 'Name: value'"))?;
    Ok((name.trim().parse()?, value.trim().parse()?))
}
