//! An in-memory raw zone for unit tests of the stages around it.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::Mutex;

use bytes::Bytes;
use futures_util::future::BoxFuture;

use super::{RawError, RawStore};

#[derive(Default)]
pub struct MemoryStore {
    objects: Mutex<BTreeMap<String, Bytes>>,
}

impl RawStore for MemoryStore {
    fn put<'a>(
        &'a self,
        key: &'a str,
        bytes: Bytes,
        _content_type: &'a str,
    ) -> BoxFuture<'a, Result<(), RawError>> {
        self.objects
            .lock()
            .expect("not poisoned")
            .insert(key.to_string(), bytes);
        Box::pin(async { Ok(()) })
    }

    fn put_file<'a>(
        &'a self,
        key: &'a str,
        path: &'a Path,
        content_type: &'a str,
    ) -> BoxFuture<'a, Result<(), RawError>> {
        Box::pin(async move {
            let bytes = std::fs::read(path).map_err(|e| RawError::Io {
                location: path.display().to_string(),
                message: e.to_string(),
            })?;
            self.put(key, bytes.into(), content_type).await
        })
    }

    fn open_read<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn Read + Send>, RawError>> {
        Box::pin(async move {
            let bytes = self.get(key).await?;
            Ok(Box::new(std::io::Cursor::new(bytes)) as Box<dyn Read + Send>)
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Bytes, RawError>> {
        let found = self.objects.lock().expect("not poisoned").get(key).cloned();
        Box::pin(async move {
            found.ok_or_else(|| RawError::NotFound {
                location: format!("memory://{key}"),
            })
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, RawError>> {
        let keys = self
            .objects
            .lock()
            .expect("not poisoned")
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        Box::pin(async move { Ok(keys) })
    }

    fn describe(&self) -> String {
        "memory://".into()
    }
}
