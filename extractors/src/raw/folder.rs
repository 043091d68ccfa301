//! The embedded default raw zone: a local folder with the same key layout as S3.

use std::io::Read;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::future::BoxFuture;

use super::{RawError, RawStore};

pub struct FolderStore {
    root: PathBuf,
}

impl FolderStore {
    pub fn new(root: &str) -> Self {
        FolderStore {
            root: PathBuf::from(root),
        }
    }

    fn path(&self, key: &str) -> Result<PathBuf, RawError> {
        if key.split('/').any(|part| part == ".." || part.is_empty()) {
            return Err(RawError::Io {
                location: key.to_string(),
                message: "key must not contain empty or '..' segments".into(),
            });
        }
        Ok(self.root.join(key))
    }

    fn io(&self, path: &Path, e: std::io::Error) -> RawError {
        io_error(path, e)
    }
}

fn io_error(path: &Path, e: std::io::Error) -> RawError {
    if e.kind() == std::io::ErrorKind::NotFound {
        RawError::NotFound {
            location: path.display().to_string(),
        }
    } else {
        RawError::Io {
            location: path.display().to_string(),
            message: e.to_string(),
        }
    }
}

/// Runs file work on the blocking pool, in one hop.
async fn blocking(
    work: impl FnOnce() -> Result<(), RawError> + Send + 'static,
) -> Result<(), RawError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| RawError::Io {
            location: "raw zone".into(),
            message: format!("file task: {e}"),
        })?
}

/// Writes an object beside its final name, then renames it: a reader sees the whole object
/// or none. Its folder is created only when the first write finds it missing.
fn write_atomic(path: &Path, write: impl Fn(&Path) -> std::io::Result<()>) -> Result<(), RawError> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    if let Err(e) = write(&tmp) {
        // Missing folder: made (another write may be making it at the same moment, which
        // create_dir_all accepts), then the write tried once more.
        match (e.kind(), path.parent()) {
            (std::io::ErrorKind::NotFound, Some(dir)) => {
                std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
                write(&tmp).map_err(|e| io_error(&tmp, e))?;
            }
            _ => return Err(io_error(&tmp, e)),
        }
    }
    std::fs::rename(&tmp, path).map_err(|e| io_error(path, e))
}

impl RawStore for FolderStore {
    fn put<'a>(
        &'a self,
        key: &'a str,
        bytes: Bytes,
        _content_type: &'a str,
    ) -> BoxFuture<'a, Result<(), RawError>> {
        Box::pin(async move {
            let path = self.path(key)?;
            blocking(move || write_atomic(&path, |tmp| std::fs::write(tmp, &bytes))).await
        })
    }

    fn put_file<'a>(
        &'a self,
        key: &'a str,
        source: &'a Path,
        _content_type: &'a str,
    ) -> BoxFuture<'a, Result<(), RawError>> {
        Box::pin(async move {
            let path = self.path(key)?;
            let source = source.to_path_buf();
            blocking(move || {
                write_atomic(&path, |tmp| std::fs::copy(&source, tmp).map(drop)).map_err(|e| {
                    match e {
                        // The copy's own source missing is the source's error, not the key's.
                        RawError::NotFound { .. } if !source.is_file() => RawError::NotFound {
                            location: source.display().to_string(),
                        },
                        e => e,
                    }
                })
            })
            .await
        })
    }

    fn open_read<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn Read + Send>, RawError>> {
        Box::pin(async move {
            let path = self.path(key)?;
            let f = std::fs::File::open(&path).map_err(|e| self.io(&path, e))?;
            Ok(Box::new(f) as Box<dyn Read + Send>)
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Bytes, RawError>> {
        Box::pin(async move {
            let path = self.path(key)?;
            tokio::fs::read(&path)
                .await
                .map(Bytes::from)
                .map_err(|e| self.io(&path, e))
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, RawError>> {
        Box::pin(async move {
            let mut out = Vec::new();
            let mut stack = vec![self.root.clone()];
            while let Some(dir) = stack.pop() {
                let mut rd = match tokio::fs::read_dir(&dir).await {
                    Ok(rd) => rd,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(self.io(&dir, e)),
                };
                while let Some(entry) = rd.next_entry().await.map_err(|e| self.io(&dir, e))? {
                    let p = entry.path();
                    let ft = entry.file_type().await.map_err(|e| self.io(&p, e))?;
                    let rel = p
                        .strip_prefix(&self.root)
                        .unwrap_or(&p)
                        .to_string_lossy()
                        .replace('\\', "/");
                    if ft.is_dir() {
                        if prefix.starts_with(&format!("{rel}/"))
                            || rel.starts_with(prefix)
                            || prefix.is_empty()
                        {
                            stack.push(p);
                        }
                    } else if rel.starts_with(prefix) && !rel.contains(".tmp-") {
                        out.push(rel);
                    }
                }
            }
            out.sort();
            Ok(out)
        })
    }

    fn describe(&self) -> String {
        format!("file://{}", self.root.display())
    }
}
