//! The blob store port: object storage holding what Postgres points at (encrypted
//! credentials, dashboard YAML versions, session logs, cache payloads).
//!
//! One adapter, over `object_store`, serves every backend: a local directory (the default,
//! under `BRIDGE_DATA_DIR`), `memory://`, `gs://bucket[/prefix]` and `s3://bucket[/prefix]`.
//! Besides put/get/delete it offers the two conditional writes later features rely on for
//! safe appends: `create` (only if absent) and `replace` (only if unchanged since read). On
//! GCS they are generation preconditions, on S3 `If-None-Match`/`If-Match`; object_store's
//! local backend has no compare-and-swap, so here it is a file lock around check-and-write.
//! The services never list (Postgres knows every key); `head` and a bounded `list` exist for
//! audits, such as the storage integrity check (`services::integrity`).

use std::{fmt, path::PathBuf, str::FromStr, sync::Arc};

use anyhow::Context;
use async_trait::async_trait;
use bytes::Bytes;
use object_store::{
    ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion,
    aws::{AmazonS3Builder, AmazonS3ConfigKey},
    gcp::{GoogleCloudStorageBuilder, GoogleConfigKey},
    list::{PaginatedListOptions, PaginatedListStore},
    local::LocalFileSystem,
    memory::InMemory,
    path::Path,
};
use time::OffsetDateTime;

/// What a conditional write compares against: the version a read or write returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobVersion {
    pub e_tag: Option<String>,
    pub version: Option<String>,
}

impl From<BlobVersion> for UpdateVersion {
    fn from(v: BlobVersion) -> Self {
        UpdateVersion {
            e_tag: v.e_tag,
            version: v.version,
        }
    }
}

#[derive(Debug)]
pub struct Blob {
    pub bytes: Bytes,
    pub version: BlobVersion,
}

/// What is known of an object without reading it (a head, or an entry of a listing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobMeta {
    /// The key, relative to the store, as [`BlobStore::get`] takes it.
    pub key: String,
    pub size: u64,
    pub last_modified: OffsetDateTime,
    pub version: BlobVersion,
}

/// A listing, cut at the number of objects asked for.
#[derive(Debug, Default)]
pub struct BlobListing {
    /// In no particular order.
    pub objects: Vec<BlobMeta>,
    /// More objects lie under the prefix than were listed.
    pub truncated: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("no object at `{0}`")]
    NotFound(String),
    #[error("an object already exists at `{0}`")]
    AlreadyExists(String),
    #[error("the object at `{0}` changed since it was read")]
    Conflict(String),
    #[error("`{0}` is not a valid object key")]
    InvalidKey(String),
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

/// Object storage for one purpose (one bucket, or a prefix of one).
#[async_trait]
pub trait BlobStore: Send + Sync + fmt::Debug {
    async fn get(&self, key: &str) -> Result<Blob, BlobError>;
    /// Writes unconditionally.
    async fn put(&self, key: &str, bytes: Bytes) -> Result<BlobVersion, BlobError>;
    /// Writes only if nothing is at `key` yet ([`BlobError::AlreadyExists`] otherwise).
    async fn create(&self, key: &str, bytes: Bytes) -> Result<BlobVersion, BlobError>;
    /// Writes only if the object is still at `expected` ([`BlobError::Conflict`] otherwise).
    async fn replace(
        &self,
        key: &str,
        bytes: Bytes,
        expected: &BlobVersion,
    ) -> Result<BlobVersion, BlobError>;
    /// Deletes; deleting what is not there is not an error.
    async fn delete(&self, key: &str) -> Result<(), BlobError>;
    /// The object's size, time and version, without its bytes.
    async fn head(&self, key: &str) -> Result<BlobMeta, BlobError>;
    /// At most `limit` objects under `prefix`, taken as whole segments (`a/b` holds `a/b/c`,
    /// not `a/bc`; empty: the whole store). For audits only: the services never list.
    async fn list(&self, prefix: &str, limit: usize) -> Result<BlobListing, BlobError>;
    /// Where this store writes, for logs (`gs://bucket/prefix`, `file:/…`).
    fn location(&self) -> &str;
}

/// Keys are relative paths of plain segments: no `..`, no empty segments.
fn check_key(key: &str) -> Result<(), BlobError> {
    let ok = !key.is_empty()
        && key.len() <= 512
        && key.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'='))
        });
    if ok {
        Ok(())
    } else {
        Err(BlobError::InvalidKey(key.to_owned()))
    }
}

/// The `object_store`-backed adapter for every backend.
pub struct ObjectStoreBlobs {
    store: Arc<dyn ObjectStore>,
    /// S3 and GCS: the same store, listed a page at a time (so a listing stops at its
    /// limit). Elsewhere the listing walks the directories level by level.
    paged: Option<Arc<dyn PaginatedListStore>>,
    prefix: Option<String>,
    location: String,
    /// Local backend only: the root under which lock files serialise `replace`.
    local_root: Option<PathBuf>,
}

impl fmt::Debug for ObjectStoreBlobs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectStoreBlobs")
            .field("location", &self.location)
            .finish()
    }
}

impl ObjectStoreBlobs {
    /// Opens `url`: `file:<path>` (created if missing), `memory://`, `gs://bucket[/prefix]`
    /// or `s3://bucket[/prefix]`. Cloud credentials and endpoints come from the standard
    /// environment variables (`GOOGLE_*`, `AWS_*`, e.g. `AWS_ENDPOINT` or `GOOGLE_BASE_URL`
    /// for an emulator), then from `options` (object_store's configuration keys).
    pub fn open(url: &str, options: &[(String, String)]) -> anyhow::Result<Self> {
        let (scheme, rest) = url.split_once(':').with_context(|| {
            format!("`{url}` is not a bucket URL (file:…, memory://, gs://…, s3://…)")
        })?;
        let split_bucket = |rest: &str| -> anyhow::Result<(String, Option<String>)> {
            let rest = rest
                .strip_prefix("//")
                .context("expected scheme://bucket")?;
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            anyhow::ensure!(!bucket.is_empty(), "`{url}` names no bucket");
            let prefix = prefix.trim_matches('/');
            Ok((
                bucket.to_owned(),
                (!prefix.is_empty()).then(|| prefix.to_owned()),
            ))
        };
        type Stores = (Arc<dyn ObjectStore>, Option<Arc<dyn PaginatedListStore>>);
        let ((store, paged), prefix, local_root): (Stores, _, _) = match scheme {
            "file" => {
                let path = PathBuf::from(rest.trim_start_matches("//"));
                std::fs::create_dir_all(&path)
                    .with_context(|| format!("creating {}", path.display()))?;
                let root = path
                    .canonicalize()
                    .with_context(|| format!("resolving {}", path.display()))?;
                (
                    (Arc::new(LocalFileSystem::new_with_prefix(&root)?), None),
                    None,
                    Some(root),
                )
            }
            "memory" => ((Arc::new(InMemory::new()), None), None, None),
            "gs" => {
                let (bucket, prefix) = split_bucket(rest)?;
                let mut b = GoogleCloudStorageBuilder::from_env().with_bucket_name(bucket);
                for (k, v) in options {
                    let key = GoogleConfigKey::from_str(k)
                        .with_context(|| format!("unknown GCS option `{k}`"))?;
                    b = b.with_config(key, v);
                }
                let gcs = Arc::new(b.build()?);
                ((gcs.clone(), Some(gcs)), prefix, None)
            }
            "s3" => {
                let (bucket, prefix) = split_bucket(rest)?;
                let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
                for (k, v) in options {
                    let key = AmazonS3ConfigKey::from_str(k)
                        .with_context(|| format!("unknown S3 option `{k}`"))?;
                    b = b.with_config(key, v);
                }
                let s3 = Arc::new(b.build()?);
                ((s3.clone(), Some(s3)), prefix, None)
            }
            other => anyhow::bail!("`{other}:` buckets are not supported (file, memory, gs, s3)"),
        };
        Ok(Self {
            store,
            paged,
            prefix,
            location: url.to_owned(),
            local_root,
        })
    }

    fn path(&self, key: &str) -> Result<Path, BlobError> {
        check_key(key)?;
        let full = match &self.prefix {
            Some(p) => format!("{p}/{key}"),
            None => key.to_owned(),
        };
        Path::parse(full).map_err(|_| BlobError::InvalidKey(key.to_owned()))
    }

    fn map_err(&self, key: &str, e: object_store::Error) -> BlobError {
        match e {
            object_store::Error::NotFound { .. } => BlobError::NotFound(key.to_owned()),
            object_store::Error::AlreadyExists { .. } => BlobError::AlreadyExists(key.to_owned()),
            object_store::Error::Precondition { .. } => BlobError::Conflict(key.to_owned()),
            other => BlobError::Store(
                anyhow::Error::new(other).context(format!("object `{key}` in {}", self.location)),
            ),
        }
    }

    /// An object's metadata under its key relative to the store; `None` for what is not
    /// one of ours: outside the prefix, or the local backend's lock files.
    fn meta(&self, m: ObjectMeta) -> Option<BlobMeta> {
        let full = m.location.as_ref();
        let key = match &self.prefix {
            Some(p) => full.strip_prefix(p.as_str())?.strip_prefix('/')?,
            None => full,
        };
        if key.is_empty() || (self.local_root.is_some() && key.ends_with(".lock")) {
            return None;
        }
        let nanos = i128::from(m.last_modified.timestamp()) * 1_000_000_000
            + i128::from(m.last_modified.timestamp_subsec_nanos());
        Some(BlobMeta {
            key: key.to_owned(),
            size: m.size,
            last_modified: OffsetDateTime::from_unix_timestamp_nanos(nanos)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH),
            version: BlobVersion {
                e_tag: m.e_tag,
                version: m.version,
            },
        })
    }

    /// The full path under which `prefix` (relative, possibly empty) lies.
    fn list_root(&self, prefix: &str) -> Result<Option<String>, BlobError> {
        if !prefix.is_empty() {
            check_key(prefix)?;
        }
        Ok(match (&self.prefix, prefix) {
            (None, "") => None,
            (None, p) => Some(p.to_owned()),
            (Some(root), "") => Some(root.clone()),
            (Some(root), p) => Some(format!("{root}/{p}")),
        })
    }

    /// S3 and GCS: pages of up to 1,000 keys until `limit`.
    async fn list_paged(
        &self,
        paged: &dyn PaginatedListStore,
        root: Option<String>,
        limit: usize,
    ) -> Result<BlobListing, BlobError> {
        let what = root.clone().unwrap_or_default();
        let prefix = root.map(|r| format!("{r}/"));
        let mut listing = BlobListing::default();
        let mut page_token = None;
        loop {
            let opts = PaginatedListOptions {
                max_keys: Some((limit - listing.objects.len()).clamp(1, 1000)),
                page_token: page_token.take(),
                ..Default::default()
            };
            let page = paged
                .list_paginated(prefix.as_deref(), opts)
                .await
                .map_err(|e| self.map_err(&what, e))?;
            for m in page.result.objects {
                if listing.objects.len() == limit {
                    listing.truncated = true;
                    return Ok(listing);
                }
                listing.objects.extend(self.meta(m));
            }
            match page.page_token {
                Some(t) if listing.objects.len() < limit => page_token = Some(t),
                Some(_) => {
                    listing.truncated = true;
                    return Ok(listing);
                }
                None => return Ok(listing),
            }
        }
    }

    /// Local directories and memory: one level at a time, until `limit`.
    async fn list_walk(
        &self,
        root: Option<String>,
        limit: usize,
    ) -> Result<BlobListing, BlobError> {
        let what = root.clone().unwrap_or_default();
        let mut listing = BlobListing::default();
        let mut levels = std::collections::VecDeque::from([root.map(Path::from)]);
        while let Some(level) = levels.pop_front() {
            let found = match self.store.list_with_delimiter(level.as_ref()).await {
                Ok(found) => found,
                // A directory removed while it was walked holds nothing any more.
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(self.map_err(&what, e)),
            };
            for m in found.objects {
                if listing.objects.len() == limit {
                    listing.truncated = true;
                    return Ok(listing);
                }
                listing.objects.extend(self.meta(m));
            }
            levels.extend(found.common_prefixes.into_iter().map(Some));
        }
        Ok(listing)
    }

    async fn put_mode(
        &self,
        key: &str,
        bytes: Bytes,
        mode: PutMode,
    ) -> Result<BlobVersion, BlobError> {
        let path = self.path(key)?;
        let opts = PutOptions {
            mode,
            ..Default::default()
        };
        let r = self
            .store
            .put_opts(&path, PutPayload::from(bytes), opts)
            .await
            .map_err(|e| self.map_err(key, e))?;
        Ok(BlobVersion {
            e_tag: r.e_tag,
            version: r.version,
        })
    }

    /// Compare-and-swap on a local directory: hold an exclusive lock on a sidecar file while
    /// checking the current e-tag and writing (object_store renames into place atomically).
    async fn replace_local(
        &self,
        root: PathBuf,
        key: &str,
        bytes: Bytes,
        expected: &BlobVersion,
    ) -> Result<BlobVersion, BlobError> {
        let path = self.path(key)?;
        let lock_path = root.join(format!("{path}.lock"));
        let lock = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
            if let Some(dir) = lock_path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)?;
            f.lock()?;
            Ok(f)
        })
        .await
        .map_err(|e| BlobError::Store(e.into()))?
        .map_err(|e| {
            BlobError::Store(anyhow::Error::new(e).context("locking for compare-and-swap"))
        })?;
        let current = self
            .store
            .head(&path)
            .await
            .map_err(|e| self.map_err(key, e))?;
        let result = if current.e_tag == expected.e_tag {
            self.put_mode(key, bytes, PutMode::Overwrite).await
        } else {
            Err(BlobError::Conflict(key.to_owned()))
        };
        drop(lock);
        result
    }
}

#[async_trait]
impl BlobStore for ObjectStoreBlobs {
    #[tracing::instrument(name = "blob.get", skip_all)]
    async fn get(&self, key: &str) -> Result<Blob, BlobError> {
        let path = self.path(key)?;
        let r = self
            .store
            .get(&path)
            .await
            .map_err(|e| self.map_err(key, e))?;
        let version = BlobVersion {
            e_tag: r.meta.e_tag.clone(),
            version: r.meta.version.clone(),
        };
        let bytes = r.bytes().await.map_err(|e| self.map_err(key, e))?;
        Ok(Blob { bytes, version })
    }

    #[tracing::instrument(name = "blob.put", skip_all)]
    async fn put(&self, key: &str, bytes: Bytes) -> Result<BlobVersion, BlobError> {
        self.put_mode(key, bytes, PutMode::Overwrite).await
    }

    #[tracing::instrument(name = "blob.create", skip_all)]
    async fn create(&self, key: &str, bytes: Bytes) -> Result<BlobVersion, BlobError> {
        self.put_mode(key, bytes, PutMode::Create).await
    }

    #[tracing::instrument(name = "blob.replace", skip_all)]
    async fn replace(
        &self,
        key: &str,
        bytes: Bytes,
        expected: &BlobVersion,
    ) -> Result<BlobVersion, BlobError> {
        match &self.local_root {
            Some(root) => self.replace_local(root.clone(), key, bytes, expected).await,
            None => {
                self.put_mode(key, bytes, PutMode::Update(expected.clone().into()))
                    .await
            }
        }
    }

    #[tracing::instrument(name = "blob.delete", skip_all)]
    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        let path = self.path(key)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.map_err(key, e)),
        }
    }

    #[tracing::instrument(name = "blob.head", skip_all)]
    async fn head(&self, key: &str) -> Result<BlobMeta, BlobError> {
        let path = self.path(key)?;
        let m = self
            .store
            .head(&path)
            .await
            .map_err(|e| self.map_err(key, e))?;
        self.meta(m)
            .ok_or_else(|| BlobError::InvalidKey(key.to_owned()))
    }

    #[tracing::instrument(name = "blob.list", skip_all)]
    async fn list(&self, prefix: &str, limit: usize) -> Result<BlobListing, BlobError> {
        let root = self.list_root(prefix)?;
        if limit == 0 {
            return Ok(BlobListing {
                objects: Vec::new(),
                truncated: true,
            });
        }
        match &self.paged {
            Some(paged) => self.list_paged(paged.as_ref(), root, limit).await,
            None => self.list_walk(root, limit).await,
        }
    }

    fn location(&self) -> &str {
        &self.location
    }
}

/// The four buckets, one per purpose.
#[derive(Debug, Clone)]
pub struct Buckets {
    pub credentials: Arc<dyn BlobStore>,
    pub dashboards: Arc<dyn BlobStore>,
    pub sessions: Arc<dyn BlobStore>,
    pub cache: Arc<dyn BlobStore>,
}

impl Buckets {
    pub fn open(settings: &settings::BucketSettings) -> anyhow::Result<Self> {
        let open = |url: &str| -> anyhow::Result<Arc<dyn BlobStore>> {
            Ok(Arc::new(
                ObjectStoreBlobs::open(url, &settings.options)
                    .with_context(|| format!("opening bucket {url}"))?,
            ))
        };
        Ok(Self {
            credentials: open(&settings.credentials)?,
            dashboards: open(&settings.dashboards)?,
            sessions: open(&settings.sessions)?,
            cache: open(&settings.cache)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_plain_relative_paths() {
        for ok in ["a", "teams/1/connections/2.json", "x=1/y_z-3.bin"] {
            assert!(check_key(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/a", "a/", "a//b", "../a", "a/./b", "a b", "a\\b", "é"] {
            assert!(check_key(bad).is_err(), "{bad}");
        }
    }

    async fn conditional_writes(store: &dyn BlobStore) {
        let v1 = store
            .create("k/one", Bytes::from_static(b"1"))
            .await
            .expect("create");
        assert!(matches!(
            store.create("k/one", Bytes::from_static(b"x")).await,
            Err(BlobError::AlreadyExists(_))
        ));
        let got = store.get("k/one").await.expect("get");
        assert_eq!(&got.bytes[..], b"1");
        let v2 = store
            .replace("k/one", Bytes::from_static(b"2"), &got.version)
            .await
            .expect("cas");
        assert_ne!(v1, v2);
        assert!(matches!(
            store.replace("k/one", Bytes::from_static(b"3"), &v1).await,
            Err(BlobError::Conflict(_))
        ));
        assert_eq!(&store.get("k/one").await.expect("get").bytes[..], b"2");
        store.delete("k/one").await.expect("delete");
        store.delete("k/one").await.expect("idempotent delete");
        assert!(matches!(
            store.get("k/one").await,
            Err(BlobError::NotFound(_))
        ));
    }

    async fn listing(store: &dyn BlobStore) {
        for key in ["a/1.json", "a/b/2.json", "a/b/c/3.json", "ab/4.json", "z"] {
            store
                .put(key, Bytes::from_static(b"four"))
                .await
                .expect("put");
        }
        // A compare-and-swap leaves the local backend's lock file beside the object.
        let v = store.get("z").await.expect("get").version;
        store
            .replace("z", Bytes::from_static(b"seven!!"), &v)
            .await
            .expect("cas");
        let keys = |l: &BlobListing| {
            let mut k: Vec<String> = l.objects.iter().map(|m| m.key.clone()).collect();
            k.sort();
            k
        };
        let all = store.list("", 100).await.expect("list");
        assert_eq!(
            keys(&all),
            ["a/1.json", "a/b/2.json", "a/b/c/3.json", "ab/4.json", "z"]
        );
        assert!(!all.truncated);
        let a = store.list("a", 100).await.expect("list a");
        assert_eq!(keys(&a), ["a/1.json", "a/b/2.json", "a/b/c/3.json"]);
        let cut = store.list("", 2).await.expect("cut");
        assert_eq!(cut.objects.len(), 2);
        assert!(cut.truncated);
        assert!(
            store
                .list("nothing", 10)
                .await
                .expect("empty")
                .objects
                .is_empty()
        );
        assert!(matches!(
            store.list("../a", 10).await,
            Err(BlobError::InvalidKey(_))
        ));
        let head = store.head("z").await.expect("head");
        assert_eq!((head.key.as_str(), head.size), ("z", 7));
        assert!(OffsetDateTime::now_utc() - head.last_modified < time::Duration::minutes(5));
        assert!(matches!(
            store.head("missing").await,
            Err(BlobError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn local_and_memory_stores_list_under_a_prefix_up_to_a_limit() {
        let dir = std::env::temp_dir().join(format!("bridge-blob-{}", uuid::Uuid::new_v4()));
        let store = ObjectStoreBlobs::open(&format!("file:{}", dir.display()), &[]).expect("open");
        listing(&store).await;
        let _ = std::fs::remove_dir_all(dir);
        listing(&ObjectStoreBlobs::open("memory://", &[]).expect("open")).await;
    }

    #[tokio::test]
    async fn local_directories_support_create_and_compare_and_swap() {
        let dir = std::env::temp_dir().join(format!("bridge-blob-{}", uuid::Uuid::new_v4()));
        let store = ObjectStoreBlobs::open(&format!("file:{}", dir.display()), &[]).expect("open");
        conditional_writes(&store).await;
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn memory_stores_support_create_and_compare_and_swap() {
        let store = ObjectStoreBlobs::open("memory://", &[]).expect("open");
        conditional_writes(&store).await;
    }

    #[tokio::test]
    async fn local_compare_and_swap_lets_exactly_one_concurrent_writer_win() {
        let dir = std::env::temp_dir().join(format!("bridge-blob-{}", uuid::Uuid::new_v4()));
        let store = Arc::new(
            ObjectStoreBlobs::open(&format!("file:{}", dir.display()), &[]).expect("open"),
        );
        let v = store
            .create("log", Bytes::from_static(b"0"))
            .await
            .expect("create");
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let (store, v) = (store.clone(), v.clone());
                tokio::spawn(async move {
                    store
                        .replace("log", Bytes::from(format!("{i}")), &v)
                        .await
                        .is_ok()
                })
            })
            .collect();
        let mut wins = 0;
        for t in tasks {
            wins += usize::from(t.await.expect("join"));
        }
        assert_eq!(wins, 1);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn bad_urls_are_refused_with_a_reason() {
        for bad in ["nope", "ftp://x", "gs://", "s3:///prefix"] {
            assert!(ObjectStoreBlobs::open(bad, &[]).is_err(), "{bad}");
        }
    }
}
