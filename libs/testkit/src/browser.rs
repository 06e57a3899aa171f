//! A real browser for end-to-end tests: Debian's Chromium, headless, driven
//! through chromedriver's W3C WebDriver protocol (plain JSON over HTTP on a
//! loopback port), with a fresh profile per browser. Only what the console
//! tests need: navigate, find, type, click, read, screenshot.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The chromedriver and Chromium binaries (`GATEWAY_TEST_CHROMEDRIVER`,
/// `GATEWAY_TEST_CHROMIUM`; `None` to skip, a panic under CI).
pub fn binaries() -> Option<(String, String)> {
    let driver = crate::server_url("GATEWAY_TEST_CHROMEDRIVER")?;
    let chromium = crate::server_url("GATEWAY_TEST_CHROMIUM")?;
    Some((driver, chromium))
}

/// One headless Chromium session; closed, with its driver, on drop.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    client: Client<HttpConnector, Full<Bytes>>,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn start((driver, chromium): &(String, String)) -> Result<Self, String> {
        let port = free_port()?;
        let driver = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| format!("chromedriver did not start: {error}"))?;
        let profile = tempfile::tempdir().map_err(|error| error.to_string())?;
        let mut browser = Self {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            _profile: profile,
        };
        browser.until_driver_ready().await?;
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--window-size=1280,900",
        ];
        let mut args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
        args.push(format!(
            "--user-data-dir={}",
            browser._profile.path().display()
        ));
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
        }}});
        let created = browser.call("POST", "/session", Some(capabilities)).await?;
        browser.session = created["sessionId"].as_str().unwrap_or_default().to_owned();
        Ok(browser)
    }

    async fn until_driver_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(status) = self.call("GET", "/status", None).await
                && status["ready"] == true
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err("chromedriver never became ready".to_owned())
    }

    /// One WebDriver command: its `value`, or the driver's error.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let body = body.map(|body| body.to_string()).unwrap_or_default();
        let request = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|error| error.to_string())?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|error| error.to_string())?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|error| error.to_string())?
            .to_bytes();
        let value: Value = serde_json::from_slice(&bytes).map_err(|error| error.to_string())?;
        if status.is_success() {
            Ok(value["value"].clone())
        } else {
            Err(format!("{method} {path}: {}", value["value"]))
        }
    }

    async fn command(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        self.call(method, &format!("/session/{}{path}", self.session), body)
            .await
    }

    pub async fn goto(&self, url: &str) -> Result<(), String> {
        self.command("POST", "/url", Some(json!({"url": url})))
            .await
            .map(drop)
    }

    pub async fn url(&self) -> Result<String, String> {
        Ok(self
            .command("GET", "/url", None)
            .await?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// The first element matching `css`, waiting up to 10 s for it.
    pub async fn find(&self, css: &str) -> Result<String, String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found = self
                .command(
                    "POST",
                    "/element",
                    Some(json!({"using": "css selector", "value": css})),
                )
                .await;
            match found {
                Ok(element) => return Ok(element[ELEMENT].as_str().unwrap_or_default().to_owned()),
                Err(error) if Instant::now() >= deadline => return Err(format!("{css}: {error}")),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// How many elements match `css` now (no waiting).
    pub async fn count(&self, css: &str) -> Result<usize, String> {
        let query = json!({"using": "css selector", "value": css});
        let found = self.command("POST", "/elements", Some(query)).await?;
        Ok(found.as_array().map_or(0, Vec::len))
    }

    /// Runs `action` on the element matching `css`, finding it again while
    /// the page swaps it out (htmx replaces the body after a navigation).
    async fn on_element(
        &self,
        css: &str,
        (method, action): (&str, &str),
        body: Option<Value>,
    ) -> Result<Value, String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let element = self.find(css).await?;
            let path = format!("/element/{element}{action}");
            match self.command(method, &path, body.clone()).await {
                Err(error) if error.contains("stale element") && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                done => return done,
            }
        }
    }

    /// Types `text` into the field matching `css` (after clearing it).
    pub async fn fill(&self, css: &str, text: &str) -> Result<(), String> {
        self.on_element(css, ("POST", "/clear"), Some(json!({})))
            .await?;
        let typed = json!({"text": text});
        self.on_element(css, ("POST", "/value"), Some(typed))
            .await
            .map(drop)
    }

    pub async fn click(&self, css: &str) -> Result<(), String> {
        self.on_element(css, ("POST", "/click"), Some(json!({})))
            .await
            .map(drop)
    }

    /// The rendered text of the element matching `css`.
    pub async fn text(&self, css: &str) -> Result<String, String> {
        let text = self.on_element(css, ("GET", "/text"), None).await?;
        Ok(text.as_str().unwrap_or_default().to_owned())
    }

    /// The current value of the input matching `css`.
    pub async fn value(&self, css: &str) -> Result<String, String> {
        let value = self
            .on_element(css, ("GET", "/property/value"), None)
            .await?;
        Ok(value.as_str().unwrap_or_default().to_owned())
    }

    /// The value of a script run in the page (`return ...;`).
    pub async fn script(&self, source: &str) -> Result<Value, String> {
        let body = json!({"script": source, "args": []});
        self.command("POST", "/execute/sync", Some(body)).await
    }

    /// Waits up to 10 s for the element matching `css` to contain `text`.
    pub async fn until_text(&self, css: &str, text: &str) -> Result<String, String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let seen = self.text(css).await.unwrap_or_default();
            if seen.contains(text) {
                return Ok(seen);
            }
            if Instant::now() >= deadline {
                return Err(format!("{css} never showed {text:?}; it shows {seen:?}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A PNG of the window, written to `dir/name.png`; its path.
    pub async fn screenshot(&self, dir: &Path, name: &str) -> Result<PathBuf, String> {
        let encoded = self.command("GET", "/screenshot", None).await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap_or_default())
            .map_err(|error| error.to_string())?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).map_err(|error| error.to_string())?;
        Ok(path)
    }
}

impl Browser {
    /// Ends the session (Chromium exits), then the driver.
    pub async fn close(self) {
        let _ = self
            .call("DELETE", &format!("/session/{}", self.session), None)
            .await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Killing the driver ends its Chromium too.
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|error| error.to_string())?;
    listener
        .local_addr()
        .map(|addr| addr.port())
        .map_err(|error| error.to_string())
}

/// How many distinct colours a PNG's pixels have (1 for a blank page).
pub fn colours(png: &[u8]) -> Result<usize, String> {
    let decoder = png::Decoder::new(std::io::Cursor::new(png));
    let mut reader = decoder.read_info().map_err(|error| error.to_string())?;
    let mut pixels = vec![0; reader.output_buffer_size().unwrap_or(0)];
    let frame = reader
        .next_frame(&mut pixels)
        .map_err(|error| error.to_string())?;
    let step = frame.color_type.samples();
    let seen: std::collections::HashSet<&[u8]> =
        pixels[..frame.buffer_size()].chunks(step).collect();
    Ok(seen.len())
}
