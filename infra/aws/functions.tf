# One Lambda per enabled function: the same binary that Cloud Run runs, built by
# `cargo lambda build --release --arm64` into <artifacts_dir>/<name>/bootstrap.zip.

locals {
  bucket_env = {
    for purpose, b in aws_s3_bucket.bridge : "${upper(purpose)}_BUCKET" => "s3://${b.bucket}"
  }

  # Settings every function reads (common/settings/src/lib.rs, plus buckets and key).
  common_env = merge(
    {
      BRIDGE_ENV         = "production"
      AUTH_MODE          = "oidc"
      AUTH_ISSUER        = var.auth_issuer
      AUTH_AUDIENCE      = var.auth_audience
      DATABASE_POOL_SIZE = tostring(var.database_pool_size)
      LOG_FORMAT         = "json"
      RUST_LOG           = var.rust_log
      KMS_KEY_URI        = "awskms://${aws_kms_key.bridge.arn}"
    },
    local.bucket_env,
    # Jobs (catalog scans) run as asynchronous invocations of the job function.
    local.job_function == null ? {} : { JOBS_RUNNER = "lambda", JOBS_LAMBDA_FUNCTION = local.job_function_name },
    var.auth_jwks_url == null ? {} : { AUTH_JWKS_URL = var.auth_jwks_url },
    var.database_ca_file == null ? {} : { DATABASE_CA_FILE = var.database_ca_file },
    length(var.cors_allowed_origins) == 0 ? {} : { CORS_ALLOWED_ORIGINS = join(",", var.cors_allowed_origins) },
  )

  # Secret values, read at deploy time from Secrets Manager (see secrets.tf for why and what
  # that implies). Sensitive: plans show them as (sensitive value).
  job_function_name = local.job_function == null ? null : "${var.name_prefix}-${local.job_function}"
  database_env      = { DATABASE_URL = data.aws_secretsmanager_secret_version.database_url.secret_string }
  llm_key_env = merge(
    { for v in data.aws_secretsmanager_secret_version.anthropic_api_key : "ANTHROPIC_API_KEY" => v.secret_string },
    { for v in data.aws_secretsmanager_secret_version.openai_api_key : "OPENAI_API_KEY" => v.secret_string },
  )

  # What the llm functions (chat, generate) read besides their key: the provider, named
  # explicitly, and the run's wall-clock limit, which must end before the Lambda timeout.
  llm_env = merge(var.llm_settings, {
    LLM_PROVIDER      = var.llm_provider
    CHAT_MAX_RUN_SECS = tostring(var.chat_max_run_secs)
  })
}

resource "aws_lambda_function" "fn" {
  # checkov:skip=CKV_AWS_116: nothing would read a DLQ: API Gateway and Function URLs invoke synchronously, a failed scheduled run is retried by the next tick, and a job whose asynchronous invocation is lost goes stale and is re-dispatched by Bridge (catalog reap)
  # checkov:skip=CKV_AWS_117: VPC attachment is optional (var.vpc_subnet_ids): needed only when the database is private, and it then requires NAT for KMS, S3, the issuer, warehouses and the LLM API
  # checkov:skip=CKV_AWS_272: artifacts are built and uploaded by this stack from cargo lambda zips; code signing needs an AWS Signer pipeline that does not exist yet
  for_each = local.functions

  function_name = "${var.name_prefix}-${each.key}"
  description   = "Bridge ${each.key} function"
  role          = aws_iam_role.fn[each.key].arn

  runtime       = "provided.al2023"
  architectures = ["arm64"]
  handler       = "bootstrap"

  filename         = "${local.artifacts_dir}/${each.key}/bootstrap.zip"
  source_code_hash = filebase64sha256("${local.artifacts_dir}/${each.key}/bootstrap.zip")

  memory_size                    = each.value.memory_mb
  timeout                        = min(each.value.timeout_s, 900)
  reserved_concurrent_executions = coalesce(each.value.reserved_concurrency, -1)

  kms_key_arn = aws_kms_key.bridge.arn

  environment {
    variables = merge(
      local.common_env,
      local.database_env,
      each.value.llm ? merge(local.llm_env, local.llm_key_env) : {},
    )
  }

  tracing_config {
    mode = "Active"
  }

  dynamic "vpc_config" {
    for_each = local.in_vpc ? [1] : []

    content {
      subnet_ids         = var.vpc_subnet_ids
      security_group_ids = var.vpc_security_group_ids
    }
  }

  # The migrate deploy step runs first (migrate.tf): no function gets new code before the
  # schema it needs exists.
  depends_on = [
    aws_cloudwatch_log_group.fn,
    aws_iam_role_policy.fn,
    aws_iam_role_policy_attachment.vpc,
    aws_lambda_invocation.migrate,
  ]

  lifecycle {
    precondition {
      condition     = !each.value.llm || var.chat_max_run_secs + 60 <= min(each.value.timeout_s, 900)
      error_message = "chat_max_run_secs must end a run at least 60 s before the function's timeout (a run cut by the timeout gets no terminal event): lower it, or raise the function's timeout_s."
    }
  }
}

# ---- streaming functions: Lambda Function URLs -----------------------------------------------
#
# API Gateway HTTP APIs buffer the whole response, so the SSE functions (chat, generate) are
# reached through their own Function URL in RESPONSE_STREAM mode, for all their routes: their
# binary speaks the streaming runtime protocol (`run_with_streaming_response`: a metadata
# prelude, then body chunks), which an API Gateway integration cannot read, so even their
# plain JSON routes (chat's session CRUD) cannot stay on the HTTP API without a second,
# buffered deployment of the same code. One base URL per function instead: clients use
# outputs.function_urls (outputs.chat_url for chat) for those functions' routes.
#
# Auth type NONE: the URL is public and the function itself verifies the bearer JWT (issuer,
# audience, signature against the JWKS) on every /v1 route, exactly as behind API Gateway.
# AWS_IAM would require every caller to SigV4-sign requests with AWS credentials, which a
# browser holding the issuer's JWT does not have. What the HTTP API adds and a Function URL
# lacks: the JWT authorizer in front (a bad token is turned away by the function instead, after
# an invocation) and stage throttling (cap the function's concurrency with
# function_overrides.<name>.reserved_concurrency instead).
#
# No `cors` block, as on the HTTP API: the function answers CORS itself from
# CORS_ALLOWED_ORIGINS, preflights included (with no CORS configuration a Function URL hands
# OPTIONS to the function), so that both entry points send the same headers from one setting.

resource "aws_lambda_function_url" "stream" {
  # checkov:skip=CKV_AWS_258: public by design; every /v1 route verifies the bearer JWT in the function, and AWS_IAM auth cannot be used by browser clients
  for_each = local.streaming_functions

  function_name      = aws_lambda_function.fn[each.key].function_name
  authorization_type = "NONE"
  invoke_mode        = "RESPONSE_STREAM"
}

# Since October 2025 a public Function URL needs both statements: InvokeFunctionUrl for the
# URL, and InvokeFunction restricted to invocations that come through the URL.
resource "aws_lambda_permission" "url_public" {
  # checkov:skip=CKV_AWS_301: the streaming Function URL is public by design (auth type NONE); the function verifies the bearer JWT
  for_each = local.streaming_functions

  statement_id           = "BridgePublicFunctionUrl"
  action                 = "lambda:InvokeFunctionUrl"
  function_name          = aws_lambda_function.fn[each.key].function_name
  principal              = "*"
  function_url_auth_type = "NONE"
}

resource "aws_lambda_permission" "url_invoke" {
  # checkov:skip=CKV_AWS_301: limited to invocations through the Function URL (lambda:InvokedViaFunctionUrl); the function verifies the bearer JWT
  for_each = local.streaming_functions

  statement_id             = "BridgeInvokeViaFunctionUrl"
  action                   = "lambda:InvokeFunction"
  function_name            = aws_lambda_function.fn[each.key].function_name
  principal                = "*"
  invoked_via_function_url = true
}

# ---- jobs: asynchronous invocations ------------------------------------------------------------
#
# A scan is queued as an asynchronous invocation of the job function (common/services/src/jobs.rs).
# Lambda's own retries are off: a scan whose worker died is found by its stale heartbeat and
# handed to a new invocation by Bridge itself (common/services/src/catalog.rs, `reap`), which knows
# whether the first one is still writing.

resource "aws_lambda_function_event_invoke_config" "jobs" {
  for_each = { for name, f in local.functions : name => f if f.jobs == "run" }

  function_name                = aws_lambda_function.fn[each.key].function_name
  maximum_retry_attempts       = 0
  maximum_event_age_in_seconds = 3600
}

