# The function catalogue: the one place that says which functions Bridge has, which routes
# each serves, how big it is and what it may touch. Both roots (../aws, ../gcp) read it, so
# adding a function is adding one entry here (and building its artifact).
#
# Fields of an entry:
#   enabled    deploy it by default; flip to true once the crate exists and builds (an
#              operator can still override per deployment with var.function_overrides)
#   memory_mb  Lambda memory / Cloud Run memory limit (at least 512 on Cloud Run)
#   timeout_s  request timeout; Lambda caps it at 900, and API Gateway answers 503 after 30 s
#              whatever the Lambda timeout, so only streaming or scheduled work should exceed 29
#   streaming  the binary serves SSE (`run_function(.., true)`): on AWS it is reached through
#              a Lambda Function URL in RESPONSE_STREAM mode instead of API Gateway
#   scheduled  also invoked on a schedule (EventBridge on AWS, Cloud Scheduler on GCP)
#   llm        receives the LLM settings (LLM_PROVIDER, CHAT_MAX_RUN_SECS, var.llm_settings) and
#              the provider's API key (ANTHROPIC_API_KEY or OPENAI_API_KEY, from a secret)
#   jobs       "none"; "dispatch" (hands jobs to the job function, e.g. a scan to resume); or
#              "run" (the job function: it also runs them, from an asynchronous invocation of
#              itself on AWS, and as a task of its own on Cloud Run, which then keeps its CPU
#              between requests)
#   kms        envelope-encryption key use: "none", "decrypt" (reads stored credentials) or
#              "encrypt_decrypt" (also wraps new data keys)
#   buckets    purpose => "read" | "readwrite"; purposes are the keys of local.buckets
#   routes     "METHOD /path" with `{param}` segments, exactly as the function's router has them.
#              GET /health, GET /ready and GET /openapi.json are served by every function and
#              are not listed.
locals {
  catalogue = {
    teams = {
      enabled   = true
      memory_mb = 256
      timeout_s = 29
      streaming = false
      scheduled = false
      llm       = false
      jobs      = "none"
      kms       = "none"
      buckets   = {}
      routes = [
        "POST /v1/teams",
        "GET /v1/teams",
        "GET /v1/teams/{team_id}",
        "PATCH /v1/teams/{team_id}",
        "GET /v1/teams/{team_id}/members",
        "POST /v1/teams/{team_id}/members",
        "PATCH /v1/teams/{team_id}/members/{user_id}",
        "DELETE /v1/teams/{team_id}/members/{user_id}",
        "GET /v1/teams/{team_id}/usage",
      ]
    }

    connections = {
      enabled   = true
      memory_mb = 256
      timeout_s = 29
      streaming = false
      scheduled = false
      llm       = false
      jobs      = "none"
      kms       = "encrypt_decrypt"
      buckets   = { credentials = "readwrite" }
      routes = [
        "POST /v1/teams/{team_id}/connections",
        "GET /v1/teams/{team_id}/connections",
        "GET /v1/connections/{id}",
        "POST /v1/connections/{id}/validate",
        "DELETE /v1/connections/{id}",
      ]
    }

    catalog = {
      enabled   = true
      memory_mb = 512
      # Scans run as asynchronous invocations of this function and may take minutes; HTTP
      # requests are still cut at 29 s by API Gateway (and by Bridge's own deadline).
      timeout_s = 900
      streaming = false
      scheduled = false
      llm       = false
      jobs      = "run"
      kms       = "decrypt"
      buckets   = { credentials = "read", cache = "readwrite" }
      routes = [
        "POST /v1/connections/{id}/scan",
        "GET /v1/connections/{id}/scans/{scan_id}",
        "GET /v1/connections/{id}/datasets",
        "GET /v1/datasets/{id}/tables",
        "GET /v1/tables/{id}/columns",
      ]
    }

    generate = {
      enabled   = true
      memory_mb = 1024
      timeout_s = 900
      streaming = true
      scheduled = false
      llm       = true
      jobs      = "none"
      kms       = "decrypt"
      # The agent's runs are chat sessions (POST /v1/dashboards/generate): their logs too.
      buckets = { credentials = "read", dashboards = "readwrite", cache = "readwrite", sessions = "readwrite" }
      routes = [
        "POST /v1/dashboards/validate",
        "POST /v1/teams/{team_id}/dashboards",
        "GET /v1/teams/{team_id}/dashboards",
        "GET /v1/dashboards/{slug}",
        "GET /v1/dashboards/{slug}/yaml",
        "PUT /v1/dashboards/{slug}/yaml",
        "DELETE /v1/dashboards/{slug}",
        "GET /v1/dashboards/{slug}/lineage",
        "GET /v1/schemas/dashboard.json",
        "POST /v1/dashboards/generate",
      ]
    }

    data = {
      enabled   = true
      memory_mb = 1024
      timeout_s = 29
      streaming = false
      scheduled = false
      llm       = false
      jobs      = "none"
      kms       = "decrypt"
      buckets   = { credentials = "read", dashboards = "read", cache = "readwrite" }
      routes = [
        "GET /v1/dashboards/{slug}/data",
        "GET /v1/dashboards/{slug}/query/{query_id}/data",
      ]
    }

    precompute = {
      enabled   = true
      memory_mb = 1024
      timeout_s = 900
      streaming = false
      scheduled = true
      llm       = false
      jobs      = "dispatch"
      kms       = "decrypt"
      buckets   = { credentials = "read", dashboards = "read", cache = "readwrite" }
      routes = [
        "POST /v1/dashboards/{slug}/precompute",
      ]
    }

    chat = {
      enabled   = true
      memory_mb = 1024
      # A run streams for minutes (the model's tool loop; CHAT_MAX_RUN_SECS caps it, 300 s by
      # default) and its replay stays open until the run ends, so the request lives as long
      # as the run: 900 s is Lambda's maximum, reached only through a Function URL (API
      # Gateway cuts at 30 s); Cloud Run gives streaming functions var.streaming_timeout_s.
      timeout_s = 900
      streaming = true
      scheduled = false
      llm       = true
      jobs      = "none"
      kms       = "decrypt"
      # Sessions (manifests' JSONL logs) and the tool cache; credentials to run the tools on
      # the session's warehouse as the caller. No dashboards: chat reads none yet.
      buckets = { credentials = "read", sessions = "readwrite", cache = "readwrite" }
      routes = [
        "POST /v1/chat/sessions",
        "GET /v1/chat/sessions",
        "GET /v1/chat/sessions/current",
        "GET /v1/chat/sessions/{id}",
        "DELETE /v1/chat/sessions/{id}",
        "POST /v1/chat/sessions/{id}/archive",
        "POST /v1/chat/sessions/{id}/stream",
        "GET /v1/chat/sessions/{id}/runs/{run_id}/events",
        "POST /v1/chat/sessions/{id}/runs/{run_id}/cancel",
        "GET /v1/chat/sessions/{id}/messages",
        "GET /v1/chat/sessions/{id}/export",
        "GET /v1/observability/model-calls",
        "GET /v1/observability/cost-summary",
        "GET /v1/observability/tool-cache-stats",
      ]
    }
  }

  # Deploy steps: binaries that run to completion during a deploy and never serve traffic (no
  # routes, no buckets, no key). Both roots run `migrate` (functions/migrate: the migrations,
  # then the prompt blocks) before any function's new code takes traffic (docs/deploys.md): a
  # Lambda invocation on AWS, a Cloud Run job execution on GCP. Its artifact is built like a
  # function's (`cargo lambda build` builds every binary; the image with FUNCTION=migrate).
  deploy_steps = {
    migrate = {
      memory_mb = 512
      # A migration may rewrite a large table; Lambda's maximum. Long-running changes belong
      # in an expand step of their own (docs/deploys.md), not in one 15-minute invocation.
      timeout_s = 900
    }
  }

  # One bucket per purpose. `versioned` keeps old object versions (and a noncurrent-version
  # expiry); `expire_days` deletes objects that old (null: never).
  buckets = {
    credentials = { versioned = true, expire_days = null }
    dashboards  = { versioned = true, expire_days = null }
    sessions    = { versioned = false, expire_days = var.sessions_expire_days }
    cache       = { versioned = false, expire_days = var.cache_expire_days }
  }
}
