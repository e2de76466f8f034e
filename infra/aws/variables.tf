# ---- where and what -------------------------------------------------------------------------

variable "region" {
  description = "AWS region to deploy into."
  type        = string
  default     = "eu-west-1"
}

variable "name_prefix" {
  description = "Prefix of every resource name (functions, roles, log groups, API, key alias). Use one per environment, e.g. bridge-prod."
  type        = string
  default     = "bridge"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 3-32 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "tags" {
  description = "Tags added to every resource (on top of Project and ManagedBy)."
  type        = map(string)
  default     = {}
}

variable "artifacts_dir" {
  description = "Directory holding <function>/bootstrap.zip as written by `cargo lambda build --release --arm64`. Defaults to target/lambda at the repository root, relative to this directory."
  type        = string
  default     = null
}

variable "function_overrides" {
  description = "Per-deployment changes to the function catalogue (infra/catalogue/functions.tf), by function name: enabled, memory_mb, timeout_s, reserved_concurrency. Example: { generate = { enabled = false }, data = { memory_mb = 2048 } }."
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
  description = "Non-streaming function that answers the API's $default route: unrouted paths, GET /health, GET /ready and CORS preflights."
  type        = string
  default     = "teams"
}

# ---- identity -------------------------------------------------------------------------------

variable "auth_issuer" {
  description = "OIDC issuer of the bearer tokens (AUTH_ISSUER), exactly as it appears in the tokens' `iss` claim."
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

variable "api_jwt_authorizer" {
  description = "Also verify bearer tokens at API Gateway with a JWT authorizer (issuer + audience) before a function is invoked. The functions verify them regardless; this turns away bad tokens without paying for an invocation. Needs the issuer to publish /.well-known/openid-configuration."
  type        = bool
  default     = true
}

variable "cors_allowed_origins" {
  description = "Browser origins allowed to call the API (CORS_ALLOWED_ORIGINS). The functions answer CORS themselves, including preflights."
  type        = list(string)
  default     = []
}

# ---- runtime settings -----------------------------------------------------------------------

variable "rust_log" {
  description = "RUST_LOG filter of the functions."
  type        = string
  default     = "info"
}

variable "database_pool_size" {
  description = "DATABASE_POOL_SIZE per Lambda instance. One instance serves one request at a time, so keep it small; Postgres sees up to (concurrent instances x this) connections, which is why an RDS Proxy in front of the database is recommended."
  type        = number
  default     = 2
}

variable "database_ca_file" {
  description = "DATABASE_CA_FILE: path, inside the Lambda, of the PEM bundle that verifies the database (e.g. the RDS CA bundle shipped in a layer under /opt). null: the system roots."
  type        = string
  default     = null
}

variable "vpc_subnet_ids" {
  description = "Private subnets to attach the functions to, when the database is only reachable inside a VPC. The subnets then need a NAT gateway (or VPC endpoints) for KMS, S3, the token issuer, warehouses and the LLM API. Empty: no VPC."
  type        = list(string)
  default     = []
}

variable "vpc_security_group_ids" {
  description = "Security groups of the functions when vpc_subnet_ids is set."
  type        = list(string)
  default     = []
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
  description = "CHAT_MAX_RUN_SECS: the wall-clock limit of one chat run, after which it ends with an `error` event `timeout`. It must end before the function's timeout (a run cut by the timeout gets no terminal event): at most the llm functions' timeout_s minus 60 s (840 with the catalogue's 900)."
  type        = number
  default     = 300

  validation {
    condition     = var.chat_max_run_secs >= 1 && var.chat_max_run_secs <= 840
    error_message = "chat_max_run_secs must be between 1 and 840 (Lambda's 900 s timeout, less a minute to write the run's end)."
  }
}

# ---- edge -----------------------------------------------------------------------------------

variable "api_throttling_burst_limit" {
  description = "API Gateway burst limit (requests) across all routes of the stage."
  type        = number
  default     = 200
}

variable "api_throttling_rate_limit" {
  description = "API Gateway steady-state limit (requests per second) across all routes of the stage."
  type        = number
  default     = 100
}

# ---- schedule -------------------------------------------------------------------------------

variable "precompute_schedule" {
  description = "EventBridge schedule expression for scheduled functions (precompute)."
  type        = string
  default     = "rate(15 minutes)"
}

variable "precompute_schedule_enabled" {
  description = "Whether the schedule rule is enabled (false keeps it, paused)."
  type        = bool
  default     = true
}

# ---- storage, keys, logs --------------------------------------------------------------------

variable "bucket_name_prefix" {
  description = "Prefix of the four bucket names (<prefix>-credentials, ...). Bucket names are global; the default, <name_prefix>-<account id>-<region>, is unique per account and region."
  type        = string
  default     = null
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
  description = "Existing bucket receiving S3 server access logs of the four buckets (it must allow logging.s3.amazonaws.com to write). null: no server access logs."
  type        = string
  default     = null
}

variable "kms_deletion_window_days" {
  description = "Waiting period before the key is deleted after a destroy. Deleting it makes every stored credential unreadable."
  type        = number
  default     = 30
}

variable "log_retention_days" {
  description = "Retention of the functions' and the API's CloudWatch log groups."
  type        = number
  default     = 365
}

# ---- deploys and the database ---------------------------------------------------------------

variable "run_migrations" {
  description = "Run the migrate deploy step (functions/migrate: migrations, then prompt blocks) as a Lambda invocation before the functions are updated, on every apply whose migrate artifact or database changed. false: run `bridge migrate` yourself before applying (docs/deploys.md)."
  type        = bool
  default     = true
}

variable "database_managed" {
  description = "Create Bridge's Postgres here: an RDS for PostgreSQL instance in the VPC (vpc_subnet_ids), encrypted with the bridge key, with automated backups, point-in-time recovery and deletion protection (database.tf). false (the default): the database is external and DATABASE_URL points at it; give it equivalent backups yourself."
  type        = bool
  default     = false
}

variable "database_instance_class" {
  description = "RDS instance class of the managed database."
  type        = string
  default     = "db.t4g.medium"
}

variable "database_engine_version" {
  description = "PostgreSQL major version of the managed database (minor versions upgrade automatically; a major upgrade is a deliberate change of this value)."
  type        = string
  default     = "18"
}

variable "database_allocated_storage_gb" {
  description = "Initial storage of the managed database, in GiB; it grows automatically up to database_max_allocated_storage_gb."
  type        = number
  default     = 20
}

variable "database_max_allocated_storage_gb" {
  description = "Upper bound of storage autoscaling of the managed database, in GiB."
  type        = number
  default     = 200
}

variable "database_multi_az" {
  description = "Run the managed database with a synchronous standby in a second availability zone (automatic failover)."
  type        = bool
  default     = true
}

variable "database_backup_retention_days" {
  description = "Days of automated backups of the managed database, which is also the point-in-time recovery window (1-35)."
  type        = number
  default     = 14

  validation {
    condition     = var.database_backup_retention_days >= 1 && var.database_backup_retention_days <= 35
    error_message = "database_backup_retention_days must be between 1 and 35 (0 would turn automated backups and point-in-time recovery off)."
  }
}

variable "database_subnet_ids" {
  description = "Private subnets (two availability zones at least) of the managed database. Empty: vpc_subnet_ids."
  type        = list(string)
  default     = []
}

variable "database_proxy" {
  description = "Put an RDS Proxy in front of the managed database: Lambda instances then share a small pool of server connections instead of opening DATABASE_POOL_SIZE each (docs/capacity.md). Its credentials are the app user's secret (<name_prefix>/database-app-user, put out of band)."
  type        = bool
  default     = true
}
