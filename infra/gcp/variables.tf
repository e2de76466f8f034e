# ---- where and what -------------------------------------------------------------------------

variable "project_id" {
  description = "Google Cloud project to deploy into."
  type        = string
}

variable "region" {
  description = "Region of the Cloud Run services, key ring, buckets and scheduler jobs."
  type        = string
  default     = "europe-west1"
}

variable "name_prefix" {
  description = "Prefix of every resource name (services, service accounts, buckets, key ring, load balancer). Use one per environment, e.g. bridge-prod."
  type        = string
  default     = "bridge"

  validation {
    # Service account ids are <prefix>-<function>, at most 30 characters.
    condition     = can(regex("^[a-z][a-z0-9-]{1,16}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 3-18 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "labels" {
  description = "Labels added to every resource that takes labels (on top of app and managed-by)."
  type        = map(string)
  default     = {}
}

variable "enable_apis" {
  description = "Enable the Google APIs this stack uses (Cloud Run, Compute, KMS, Secret Manager, Scheduler, Storage). Disable when the project's APIs are managed elsewhere."
  type        = bool
  default     = true
}

variable "deletion_protection" {
  description = "Refuse to destroy the Cloud Run services while true. Off by default: the services are stateless, and disabling a function in the catalogue destroys its service."
  type        = bool
  default     = false
}

# ---- images ---------------------------------------------------------------------------------

variable "image_repository" {
  description = "Artifact Registry repository holding one image per function, built from infra/docker/Dockerfile with --build-arg FUNCTION=<name>, e.g. europe-west1-docker.pkg.dev/my-project/bridge. The image of function f is <image_repository>/<f>:<image_tag>."
  type        = string
}

variable "image_tag" {
  description = "Image tag deployed for every function; prefer an immutable one such as the git commit (image_overrides pins digests)."
  type        = string
}

variable "image_overrides" {
  description = "Full image reference per function name (or `migrate`, the deploy step), replacing <image_repository>/<name>:<image_tag> (e.g. to pin a digest)."
  type        = map(string)
  default     = {}
}

variable "function_overrides" {
  description = "Per-deployment changes to the function catalogue (infra/catalogue/functions.tf), by function name: enabled, memory_mb, timeout_s, max_instances. Example: { generate = { enabled = false }, data = { memory_mb = 2048 } }."
  type = map(object({
    enabled              = optional(bool)
    memory_mb            = optional(number)
    timeout_s            = optional(number)
    reserved_concurrency = optional(number)
    max_instances        = optional(number)
  }))
  default = {}
}

variable "default_function" {
  description = "Function that answers requests no route claims, GET /health and GET /ready at the load balancer."
  type        = string
  default     = "teams"
}

# ---- identity -------------------------------------------------------------------------------

variable "auth_issuer" {
  description = "OIDC issuer of the bearer tokens (AUTH_ISSUER)."
  type        = string

  validation {
    condition     = startswith(var.auth_issuer, "https://")
    error_message = "auth_issuer must be an https:// URL."
  }
}

variable "auth_audience" {
  description = "Audience the tokens must carry (AUTH_AUDIENCE)."
  type        = string
}

variable "auth_jwks_url" {
  description = "JWKS URL (AUTH_JWKS_URL); null lets the functions discover it from the issuer."
  type        = string
  default     = null
}

variable "cors_allowed_origins" {
  description = "Browser origins allowed to call the API (CORS_ALLOWED_ORIGINS). The functions answer CORS themselves."
  type        = list(string)
  default     = []
}

variable "allow_unauthenticated" {
  description = "Let Cloud Run admit requests without a Google identity token (allUsers may invoke). Needed because end users carry the issuer's JWT, which the functions verify, not a Google token; ingress still only admits the load balancer and same-project callers."
  type        = bool
  default     = true
}

# ---- runtime settings -----------------------------------------------------------------------

variable "rust_log" {
  description = "RUST_LOG filter of the functions."
  type        = string
  default     = "info"
}

variable "database_pool_size" {
  description = "DATABASE_POOL_SIZE per instance. Postgres sees up to (functions x max_instances x this) connections."
  type        = number
  default     = 4
}

variable "database_ca_file" {
  description = "DATABASE_CA_FILE: path, inside the container, of the PEM bundle that verifies the database. null: the system roots."
  type        = string
  default     = null
}

variable "cloud_sql_instance" {
  description = "Cloud SQL connection name (project:region:instance). When set, it is mounted at /cloudsql in every service and the service accounts get roles/cloudsql.client; DATABASE_URL can then use host=/cloudsql/<connection name>."
  type        = string
  default     = null
}

variable "vpc_network" {
  description = "VPC network for Direct VPC egress to private ranges (e.g. a database on a private IP). null: no VPC egress."
  type        = string
  default     = null
}

variable "vpc_subnetwork" {
  description = "Subnetwork for Direct VPC egress, with vpc_network."
  type        = string
  default     = null
}

variable "container_concurrency" {
  description = "Concurrent requests per Cloud Run instance."
  type        = number
  default     = 80
}

variable "min_instances" {
  description = "Minimum instances per service (0 scales to zero)."
  type        = number
  default     = 0
}

variable "max_instances" {
  description = "Maximum instances per service, unless the function's override sets max_instances."
  type        = number
  default     = 5
}

# ---- LLM (the catalogue's llm functions: chat, generate) ------------------------------------

variable "llm_provider" {
  description = "LLM_PROVIDER of the llm functions: anthropic (ANTHROPIC_API_KEY, from a secret), openai (any OpenAI-compatible Chat Completions server; OPENAI_API_KEY, from a secret: put any value for a server without keys) or builtin (deterministic, offline, no key). Set explicitly, so that a missing key fails at start-up rather than falling back to builtin."
  type        = string
  default     = "anthropic"

  validation {
    condition     = contains(["anthropic", "openai", "builtin"], var.llm_provider)
    error_message = "llm_provider must be anthropic, openai or builtin."
  }
}

variable "llm_settings" {
  description = "Further LLM and chat settings of the llm functions, by variable name (the LLM section of .env.example): e.g. ANTHROPIC_MODEL, OPENAI_BASE_URL, OPENAI_MODEL, LLM_MAX_TOKENS, LLM_FIRST_BYTE_TIMEOUT_MS, CHAT_MAX_STEPS, CHAT_MAX_RUN_USD. Not API keys (secrets), nor LLM_PROVIDER and CHAT_MAX_RUN_SECS (variables of their own)."
  type        = map(string)
  default     = {}

  validation {
    condition = alltrue([
      for k in keys(var.llm_settings) :
      can(regex("^(LLM|ANTHROPIC|OPENAI|CHAT)_[A-Z0-9_]+$", k)) && !endswith(k, "_API_KEY") && !contains(["LLM_PROVIDER", "CHAT_MAX_RUN_SECS"], k)
    ])
    error_message = "llm_settings takes LLM_*, ANTHROPIC_*, OPENAI_* and CHAT_* settings, except the API keys, LLM_PROVIDER and CHAT_MAX_RUN_SECS."
  }
}

variable "chat_max_run_secs" {
  description = "CHAT_MAX_RUN_SECS: the wall-clock limit of one chat run, after which it ends with an `error` event `timeout`. It must end before the request timeout of the service (a stream cut by Cloud Run gets no terminal event): at most the llm functions' request timeout minus 60 s (streaming_timeout_s, 3600 by default, for chat)."
  type        = number
  default     = 300

  validation {
    condition     = var.chat_max_run_secs >= 1 && var.chat_max_run_secs <= 3540
    error_message = "chat_max_run_secs must be between 1 and 3540 (Cloud Run's longest request timeout, 3600 s, less a minute to write the run's end)."
  }
}

variable "streaming_timeout_s" {
  description = "Cloud Run request timeout of the streaming functions (chat, generate), at least their catalogue timeout_s: an SSE response is one request for as long as the run streams, and a replay stays open until the run ends. Cloud Run allows up to 3600 s; the load balancer sets no timeout of its own for serverless backends."
  type        = number
  default     = 3600

  validation {
    condition     = var.streaming_timeout_s >= 1 && var.streaming_timeout_s <= 3600
    error_message = "streaming_timeout_s must be between 1 and 3600 (Cloud Run's maximum)."
  }
}

# ---- edge -----------------------------------------------------------------------------------

variable "domain" {
  description = "Domain name served by the HTTPS load balancer (a Google-managed certificate is issued for it once its DNS A record points at outputs.load_balancer_ip)."
  type        = string
}

variable "enable_cloud_armor" {
  description = "Attach a Cloud Armor policy (per-IP throttling, Log4Shell rule) to every backend."
  type        = bool
  default     = true
}

variable "armor_rate_limit_per_minute" {
  description = "Requests per minute one client IP may make before Cloud Armor answers 429."
  type        = number
  default     = 600
}

# ---- schedule -------------------------------------------------------------------------------

variable "precompute_schedule" {
  description = "Cron schedule of the scheduled functions (precompute)."
  type        = string
  default     = "*/15 * * * *"
}

variable "precompute_schedule_enabled" {
  description = "Whether the scheduler job runs (false keeps it, paused)."
  type        = bool
  default     = true
}

variable "schedule_time_zone" {
  description = "Time zone of the schedule."
  type        = string
  default     = "Etc/UTC"
}

variable "scheduler_region" {
  description = "Cloud Scheduler location, when the services' region has no Cloud Scheduler. null: var.region."
  type        = string
  default     = null
}

variable "precompute_scheduler_path" {
  description = "Path the scheduler POSTs to on the precompute service. It is not routed by the load balancer, so only same-project callers such as Cloud Scheduler reach it."
  type        = string
  default     = "/internal/precompute"
}

# ---- storage, keys --------------------------------------------------------------------------

variable "bucket_name_prefix" {
  description = "Prefix of the four bucket names (<prefix>-credentials, ...). Bucket names are global; the default, <project_id>-<name_prefix>, is unique."
  type        = string
  default     = null
}

variable "bucket_location" {
  description = "Location of the buckets. null: var.region. With bucket_cmek the key ring (kms_location) must be in the same location."
  type        = string
  default     = null
}

variable "bucket_cmek" {
  description = "Encrypt the buckets with the bridge key (CMEK) instead of Google-managed keys."
  type        = bool
  default     = true
}

variable "cache_expire_days" {
  description = "Days after which cache objects are deleted."
  type        = number
  default     = 7
}

variable "sessions_expire_days" {
  description = "Days after which chat session logs are deleted."
  type        = number
  default     = 90
}

variable "noncurrent_version_expire_days" {
  description = "Days old versions of credentials and dashboards objects are kept after being replaced or deleted."
  type        = number
  default     = 90
}

variable "access_logs_bucket" {
  description = "Existing bucket receiving usage logs of the four buckets. null: none (Cloud Audit Logs data access logs are the alternative)."
  type        = string
  default     = null
}

variable "kms_location" {
  description = "Location of the key ring. null: var.region. With bucket_cmek it must match the buckets' location (e.g. europe for the EU multi-region)."
  type        = string
  default     = null
}

variable "kms_protection_level" {
  description = "SOFTWARE or HSM for the bridge key."
  type        = string
  default     = "SOFTWARE"

  validation {
    condition     = contains(["SOFTWARE", "HSM"], var.kms_protection_level)
    error_message = "kms_protection_level must be SOFTWARE or HSM."
  }
}

# ---- deploys and the database ---------------------------------------------------------------

variable "run_migrations" {
  description = "Run the migrate deploy step (functions/migrate: migrations, then prompt blocks) as a Cloud Run job, executed (gcloud run jobs execute --wait, from the machine running Terraform) before the services' new revisions are deployed, on every apply whose migrate image or database changed. false: run `bridge migrate` yourself before applying (docs/deploys.md)."
  type        = bool
  default     = true
}

variable "database_managed" {
  description = "Create Bridge's Postgres here: a Cloud SQL for PostgreSQL instance on a private IP of vpc_network, with automated backups, point-in-time recovery and deletion protection (database.tf), mounted in every service through the Cloud SQL connector. false (the default): the database is external (cloud_sql_instance, or any DATABASE_URL); give it equivalent backups yourself."
  type        = bool
  default     = false
}

variable "database_tier" {
  description = "Machine tier of the managed Cloud SQL instance (e.g. db-custom-2-7680: 2 vCPU, 7.5 GiB)."
  type        = string
  default     = "db-custom-2-7680"
}

variable "database_version" {
  description = "Cloud SQL database version of the managed instance."
  type        = string
  default     = "POSTGRES_18"
}

variable "database_disk_size_gb" {
  description = "Initial disk of the managed instance, in GB (it grows automatically)."
  type        = number
  default     = 20
}

variable "database_high_availability" {
  description = "REGIONAL availability (a standby in a second zone, automatic failover) for the managed instance; false: ZONAL."
  type        = bool
  default     = true
}

variable "database_backup_retention_count" {
  description = "Automated daily backups kept by the managed instance."
  type        = number
  default     = 14
}

variable "database_log_retention_days" {
  description = "Days of write-ahead log kept for point-in-time recovery on the managed instance (1-7): the window a restore can target to the second."
  type        = number
  default     = 7

  validation {
    condition     = var.database_log_retention_days >= 1 && var.database_log_retention_days <= 7
    error_message = "database_log_retention_days must be between 1 and 7."
  }
}

variable "database_cmek" {
  description = "Encrypt the managed instance (disk and backups) with the bridge key. The key ring must then be in the instance's region (kms_location null or equal to region)."
  type        = bool
  default     = true
}
