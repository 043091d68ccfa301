//! Published files: a local path, glob or folder; an `s3://bucket/prefix`; or an HTTP(S)
//! URL. Each file is landed unchanged as resource `file` (its extension kept, so
//! `.csv.gz` stays recognisable), streamed and hashed on the way: no file is ever held
//! in memory whole.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use mobiflux_model::RunId;

use crate::raw::{self, ManifestObject, S3Config, S3Store, TempFile};
use crate::{ExtractError, Http, Landing, Manifest, RawStore, Source};

/// Lands every file the source names; returns the written manifest.
pub async fn extract(
    http: &Http,
    store: &dyn RawStore,
    run: &RunId,
    src: &Source,
) -> Result<Manifest, ExtractError> {
    let mut landing = Landing::new(store, src, run);
    let result = land_all(http, &mut landing).await;
    landing.close(result).await
}

fn discovery(src: &Source, message: String) -> ExtractError {
    ExtractError::Discovery {
        url: src.redacted(&src.url),
        message,
    }
}

/// The extension of a file name (`csv`, `csv.gz`), for the raw key.
fn extension(name: &str) -> String {
    let base = name.rsplit('/').next().unwrap_or(name);
    let ext = match base.split_once('.') {
        Some((_, e)) if !e.is_empty() => e,
        _ => "bin",
    };
    ext.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

fn content_type(name: &str) -> &'static str {
    let n = name.to_ascii_lowercase();
    if n.ends_with(".gz") {
        "application/gzip"
    } else if n.ends_with(".zst") {
        "application/zstd"
    } else if n.ends_with(".csv") {
        "text/csv"
    } else if n.ends_with(".html") || n.ends_with(".htm") {
        "text/html"
    } else {
        "application/octet-stream"
    }
}

async fn land_file(
    store: &dyn RawStore,
    src: &Source,
    path: &Path,
    shown: &str,
    status: u16,
    headers: Vec<(String, String)>,
) -> Result<ManifestObject, ExtractError> {
    let p = path.to_path_buf();
    let (sha256, bytes) = tokio::task::spawn_blocking(move || raw::sha256_file(&p))
        .await
        .map_err(|e| discovery(src, format!("hashing task: {e}")))?
        .map_err(|e| discovery(src, format!("{shown}: {e}")))?;
    let fetched_at = chrono::Utc::now();
    let key = raw::object_key(
        &src.pipeline,
        "file",
        fetched_at,
        &sha256,
        &extension(shown),
    );
    let ct = content_type(shown);
    let key = match store.landed_before(&key, &sha256) {
        // Landed already today, unchanged (see `raw::Reusing`).
        Some(earlier) => earlier,
        None => {
            store.put_file(&key, path, ct).await?;
            store.remember(&key, &sha256);
            key
        }
    };
    Ok(ManifestObject {
        resource: "file".into(),
        url: shown.to_string(),
        key,
        status,
        headers: headers.into_iter().collect(),
        content_type: Some(ct.to_string()),
        bytes,
        sha256,
        fetched_at,
        complete: true,
        // Files are streamed from the raw zone, never held whole.
        landed: raw::Landed(None),
    })
}

fn local_paths(pattern: &str) -> Result<Vec<PathBuf>, String> {
    let mut paths: Vec<PathBuf> = if pattern.contains(['*', '?', '[']) {
        glob::glob(pattern)
            .map_err(|e| format!("bad pattern {pattern:?}: {e}"))?
            .filter_map(Result::ok)
            .filter(|p| p.is_file())
            .collect()
    } else {
        let p = PathBuf::from(pattern);
        if p.is_dir() {
            std::fs::read_dir(&p)
                .map_err(|e| format!("{pattern}: {e}"))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect()
        } else if p.is_file() {
            vec![p]
        } else {
            Vec::new()
        }
    };
    paths.sort();
    Ok(paths)
}

/// Copies a reader into a temporary file (S3 sources are landed from a local copy).
fn spool(mut r: Box<dyn Read + Send>) -> std::io::Result<TempFile> {
    let (temp, mut file) = TempFile::create("spool")?;
    std::io::copy(&mut r, &mut file)?;
    file.flush()?;
    Ok(temp)
}

async fn land_all(http: &Http, landing: &mut Landing<'_>) -> Result<(), ExtractError> {
    let src = landing.src;
    let store = landing.store;
    let url = src.url.as_str();
    if url.starts_with("http://") || url.starts_with("https://") {
        // Conditional, as the other HTTP fetches: a file the MSP confirms unchanged (304) is
        // recorded under the object landed from it today.
        let answer = crate::conditionally(
            store,
            src,
            url,
            |known| async move { http.download_if(src, url, known.as_ref()).await },
            |d: crate::http::Download, k: raw::Validated| {
                std::future::ready(k.confirmed(&d.url, &d.headers, &raw::today()))
            },
        )
        .await;
        let d = match answer {
            Ok(crate::Conditional::Confirmed(obj)) => {
                landing.manifest.objects.push(obj);
                return Ok(());
            }
            Ok(crate::Conditional::Whole(d)) => d,
            Err(e) => {
                let e = ExtractError::Fetch(e);
                landing.manifest.failures.push(src.failure("file", url, &e));
                return Err(e);
            }
        };
        let obj = land_file(
            store,
            src,
            d.temp.path(),
            &d.url,
            d.status,
            d.headers.clone(),
        )
        .await?;
        landing.manifest.objects.push(obj);
        return Ok(());
    }
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let source = S3Store::new(bucket, "", S3Config::from_env()).await?;
        let keys = source.list(prefix).await?;
        if keys.is_empty() {
            return Err(discovery(
                src,
                format!("no object under s3://{bucket}/{prefix}"),
            ));
        }
        for key in keys {
            let reader = source.open_read(&key).await?;
            let temp = tokio::task::spawn_blocking(move || spool(reader))
                .await
                .map_err(|e| discovery(src, format!("spooling task: {e}")))?
                .map_err(|e| discovery(src, format!("s3://{bucket}/{key}: {e}")))?;
            let shown = format!("s3://{bucket}/{key}");
            let obj = land_file(store, src, temp.path(), &shown, 0, Vec::new()).await?;
            landing.manifest.objects.push(obj);
        }
        return Ok(());
    }
    let pattern = url.strip_prefix("file://").unwrap_or(url);
    let paths = local_paths(pattern).map_err(|m| discovery(src, m))?;
    if paths.is_empty() {
        return Err(discovery(src, "no file matches".into()));
    }
    for p in paths {
        let shown = p.display().to_string();
        let obj = land_file(store, src, &p, &shown, 0, Vec::new()).await?;
        landing.manifest.objects.push(obj);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_survive_in_raw_keys() {
        assert_eq!(
            extension("/data/irve/consolidation-etalab.csv.gz"),
            "csv.gz"
        );
        assert_eq!(extension("s3://b/x/Export Parking.CSV"), "csv");
        assert_eq!(extension("README"), "bin");
    }

    #[test]
    fn globs_and_folders_list_files_sorted() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/parking-csv");
        let all = local_paths(root).unwrap();
        assert_eq!(all.len(), 5);
        let some = local_paths(&format!("{root}/reutlingen*.csv")).unwrap();
        let names: Vec<_> = some
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(names, ["reutlingen.csv", "reutlingen_disabled.csv"]);
        assert!(
            local_paths(&format!("{root}/nothing-*.csv"))
                .unwrap()
                .is_empty()
        );
    }
}
