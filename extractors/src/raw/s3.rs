//! The raw zone on S3 or any S3-compatible server (path-style when an endpoint is given).
//! HTTPS through rustls with ring (no aws-lc C build); credentials from the standard AWS
//! environment variables, never from a file in the project.

use aws_credential_types::Credentials;
use aws_sdk_s3::config::{BehaviorVersion, Region};
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_http_client::tls;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use std::io::Read;
use std::path::Path;

use super::{RawError, RawStore};

/// Connection settings; secrets only ever come from the environment.
#[derive(Clone, Default)]
pub struct S3Config {
    /// `MOBIFLUX_S3_ENDPOINT`: an S3-compatible server (implies path-style addressing).
    pub endpoint: Option<String>,
    /// `AWS_REGION` or `AWS_DEFAULT_REGION`, `us-east-1` when neither is set.
    pub region: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "***"),
            )
            .finish()
    }
}

impl S3Config {
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        S3Config {
            endpoint: var("MOBIFLUX_S3_ENDPOINT"),
            region: var("AWS_REGION")
                .or_else(|| var("AWS_DEFAULT_REGION"))
                .unwrap_or_else(|| "us-east-1".into()),
            access_key_id: var("AWS_ACCESS_KEY_ID"),
            secret_access_key: var("AWS_SECRET_ACCESS_KEY"),
            session_token: var("AWS_SESSION_TOKEN"),
        }
    }
}

pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    endpoint: Option<String>,
}

impl S3Store {
    pub async fn new(bucket: &str, prefix: &str, cfg: S3Config) -> Result<Self, RawError> {
        let (Some(ak), Some(sk)) = (cfg.access_key_id.clone(), cfg.secret_access_key.clone())
        else {
            return Err(RawError::BadUrl {
                url: format!("s3://{bucket}/{prefix}"),
                message: "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set".into(),
            });
        };
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let mut b = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(cfg.region.clone()))
            .credentials_provider(Credentials::new(
                ak,
                sk,
                cfg.session_token.clone(),
                None,
                "environment",
            ))
            .http_client(http);
        if let Some(ep) = &cfg.endpoint {
            b = b.endpoint_url(ep).force_path_style(true);
        }
        Ok(S3Store {
            client: aws_sdk_s3::Client::from_conf(b.build()),
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            endpoint: cfg.endpoint,
        })
    }

    fn full(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    fn location(&self, key: &str) -> String {
        format!("s3://{}/{}", self.bucket, self.full(key))
    }
}

impl S3Store {
    /// GetObject, with "no such key" told apart from other failures.
    async fn get_object(
        &self,
        key: &str,
    ) -> Result<aws_sdk_s3::operation::get_object::GetObjectOutput, RawError> {
        self.client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .send()
            .await
            .map_err(|e| {
                if e.as_service_error().is_some_and(|s| s.is_no_such_key()) {
                    RawError::NotFound {
                        location: self.location(key),
                    }
                } else {
                    RawError::Io {
                        location: self.location(key),
                        message: DisplayErrorContext(&e).to_string(),
                    }
                }
            })
    }
}

impl RawStore for S3Store {
    fn put<'a>(
        &'a self,
        key: &'a str,
        bytes: Bytes,
        content_type: &'a str,
    ) -> BoxFuture<'a, Result<(), RawError>> {
        Box::pin(async move {
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(self.full(key))
                .content_type(content_type)
                .body(ByteStream::from(bytes))
                .send()
                .await
                .map_err(|e| RawError::Io {
                    location: self.location(key),
                    message: DisplayErrorContext(&e).to_string(),
                })?;
            Ok(())
        })
    }

    fn put_file<'a>(
        &'a self,
        key: &'a str,
        path: &'a Path,
        content_type: &'a str,
    ) -> BoxFuture<'a, Result<(), RawError>> {
        Box::pin(async move {
            let body = ByteStream::from_path(path)
                .await
                .map_err(|e| RawError::Io {
                    location: path.display().to_string(),
                    message: e.to_string(),
                })?;
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(self.full(key))
                .content_type(content_type)
                .body(body)
                .send()
                .await
                .map_err(|e| RawError::Io {
                    location: self.location(key),
                    message: DisplayErrorContext(&e).to_string(),
                })?;
            Ok(())
        })
    }

    fn open_read<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn Read + Send>, RawError>> {
        Box::pin(async move {
            let io = |e: std::io::Error| RawError::Io {
                location: self.location(key),
                message: e.to_string(),
            };
            let out = self.get_object(key).await?;
            // Spool to a temporary file so the reader can be synchronous and memory flat.
            let (temp, file) = super::TempFile::create("s3").map_err(io)?;
            let mut file = tokio::fs::File::from_std(file);
            let mut body = out.body.into_async_read();
            tokio::io::copy(&mut body, &mut file).await.map_err(io)?;
            tokio::io::AsyncWriteExt::flush(&mut file)
                .await
                .map_err(io)?;
            Ok(Box::new(temp) as Box<dyn Read + Send>)
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Bytes, RawError>> {
        Box::pin(async move {
            let out = self.get_object(key).await?;
            let data = out.body.collect().await.map_err(|e| RawError::Io {
                location: self.location(key),
                message: e.to_string(),
            })?;
            Ok(data.into_bytes())
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, RawError>> {
        Box::pin(async move {
            let mut keys = Vec::new();
            let mut token = None;
            let strip = if self.prefix.is_empty() {
                0
            } else {
                self.prefix.len() + 1
            };
            loop {
                let out = self
                    .client
                    .list_objects_v2()
                    .bucket(&self.bucket)
                    .prefix(self.full(prefix))
                    .set_continuation_token(token)
                    .send()
                    .await
                    .map_err(|e| RawError::Io {
                        location: self.location(prefix),
                        message: DisplayErrorContext(&e).to_string(),
                    })?;
                keys.extend(
                    out.contents()
                        .iter()
                        .filter_map(|o| o.key())
                        .map(|k| k[strip..].to_string()),
                );
                match out.next_continuation_token() {
                    Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_string()),
                    _ => break,
                }
            }
            keys.sort();
            Ok(keys)
        })
    }

    fn describe(&self) -> String {
        match &self.endpoint {
            Some(ep) => format!("s3://{}/{} at {ep}", self.bucket, self.prefix),
            None => format!("s3://{}/{}", self.bucket, self.prefix),
        }
    }
}
