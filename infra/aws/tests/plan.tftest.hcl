# Plan-time checks of the function catalogue's wiring, against a mocked AWS provider (no
# credentials, no calls): `terraform init -backend=false && terraform test` in infra/aws.
# The artifacts are placeholders; only their hashes are read.

mock_provider "aws" {
  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
  mock_resource "aws_kms_key" {
    defaults = { arn = "arn:aws:kms:eu-west-1:123456789012:key/abcd" }
  }
  mock_data "aws_subnet" {
    defaults = { vpc_id = "vpc-0123456789abcdef0" }
  }
}

variables {
  auth_issuer   = "https://id.example.com/"
  auth_audience = "bridge"
  artifacts_dir = "./tests/fake-artifacts"
}

run "defaults" {
  command = plan

  assert {
    condition     = keys(aws_lambda_function.fn) == ["catalog", "chat", "connections", "data", "generate", "precompute", "teams"]
    error_message = "every function of the catalogue is enabled by default"
  }
  assert {
    condition     = length(aws_apigatewayv2_route.fn) == 8 + 5 + 5 + 2 + 1
    error_message = "API routes of the non-streaming functions (teams, connections, catalog, data, precompute)"
  }
  assert {
    condition     = toset(keys(aws_lambda_function_url.stream)) == toset(["chat", "generate"])
    error_message = "chat and generate stream, through Function URLs"
  }
  assert {
    condition     = length([for k, r in aws_apigatewayv2_route.fn : k if startswith(split(" ", k)[1], "/v1/chat/")]) == 0
    error_message = "no chat route on the HTTP API: the streaming binary cannot answer API Gateway"
  }
  assert {
    condition     = aws_lambda_function_url.stream["chat"].invoke_mode == "RESPONSE_STREAM" && aws_lambda_function_url.stream["chat"].authorization_type == "NONE"
    error_message = "chat's Function URL streams, and the function verifies the JWT itself"
  }
  assert {
    condition     = aws_lambda_function.fn["chat"].timeout == 900
    error_message = "chat runs stream for minutes: Lambda's maximum timeout"
  }
  assert {
    condition     = aws_lambda_function.fn["chat"].environment[0].variables["LLM_PROVIDER"] == "anthropic" && aws_lambda_function.fn["chat"].environment[0].variables["CHAT_MAX_RUN_SECS"] == "300"
    error_message = "chat names its provider and its run limit"
  }
  assert {
    condition     = !contains(keys(aws_lambda_function.fn["data"].environment[0].variables), "LLM_PROVIDER")
    error_message = "LLM settings only for the llm functions"
  }
  assert {
    condition     = length(aws_secretsmanager_secret.anthropic_api_key) == 1 && length(aws_secretsmanager_secret.openai_api_key) == 0
    error_message = "only the configured provider's secret"
  }
  assert {
    condition     = keys(aws_cloudwatch_event_rule.schedule) == ["precompute"]
    error_message = "precompute is scheduled"
  }
  assert {
    condition     = keys(aws_lambda_invocation.migrate) == ["migrate"] && aws_lambda_function.migrate["migrate"].timeout == 900
    error_message = "the migrate deploy step is a Lambda function that Terraform invokes"
  }
  assert {
    condition     = jsondecode(aws_lambda_invocation.migrate["migrate"].input) == jsondecode(file("${path.module}/../../events/migrate/deploy.json"))
    error_message = "the invocation sends events/migrate/deploy.json's payload"
  }
  assert {
    condition     = !contains(keys(aws_lambda_function.fn), "migrate")
    error_message = "migrate is a deploy step, not a function behind the API"
  }
  assert {
    condition     = [for s in data.aws_iam_policy_document.migrate["migrate"].statement : s.sid] == ["OwnLogGroup", "Tracing"]
    error_message = "migrate touches no bucket and no key"
  }
  assert {
    condition     = length(aws_db_instance.bridge) == 0 && length(aws_db_proxy.bridge) == 0
    error_message = "the database is external unless database_managed"
  }
}

run "migrations_by_hand" {
  command = plan

  variables {
    run_migrations = false
  }

  assert {
    condition     = length(aws_lambda_invocation.migrate) == 0 && length(aws_lambda_function.migrate) == 0
    error_message = "run_migrations = false deploys no migrate step"
  }
}

run "managed_database" {
  command = plan

  variables {
    database_managed       = true
    vpc_subnet_ids         = ["subnet-a", "subnet-b"]
    vpc_security_group_ids = ["sg-functions"]
  }

  assert {
    condition     = aws_db_instance.bridge["bridge"].backup_retention_period == 14 && aws_db_instance.bridge["bridge"].deletion_protection && aws_db_instance.bridge["bridge"].storage_encrypted
    error_message = "backups (and so point-in-time recovery) for 14 days, deletion protection, encryption"
  }
  assert {
    condition     = aws_db_instance.bridge["bridge"].kms_key_id == "arn:aws:kms:eu-west-1:123456789012:key/abcd" && !aws_db_instance.bridge["bridge"].publicly_accessible
    error_message = "encrypted with the bridge key, private"
  }
  assert {
    condition     = aws_db_proxy.bridge["bridge"].require_tls && length(aws_secretsmanager_secret.database_app_user) == 1
    error_message = "an RDS Proxy in front, TLS only, logging in with the app user's secret"
  }
  assert {
    condition     = toset(keys(aws_vpc_security_group_ingress_rule.database_from_functions)) == toset(["sg-functions"])
    error_message = "Postgres is reachable from the functions' security groups"
  }
}

run "a_managed_database_needs_the_vpc" {
  command = plan

  variables {
    database_managed = true
  }

  expect_failures = [aws_db_subnet_group.bridge]
}

run "teams_only" {
  command = plan

  variables {
    function_overrides = {
      connections = { enabled = false }
      catalog     = { enabled = false }
      generate    = { enabled = false }
      data        = { enabled = false }
      precompute  = { enabled = false }
      chat        = { enabled = false }
    }
  }

  assert {
    condition     = keys(aws_lambda_function.fn) == ["teams"]
    error_message = "only teams is enabled"
  }
  assert {
    condition     = length(aws_apigatewayv2_route.fn) == 8
    error_message = "teams has 8 routes"
  }
  assert {
    condition     = length(aws_lambda_function_url.stream) == 0 && length(aws_cloudwatch_event_rule.schedule) == 0
    error_message = "no streaming or scheduled function"
  }
  assert {
    condition     = aws_lambda_function.fn["teams"].environment[0].variables["CACHE_BUCKET"] == "s3://bridge-123456789012-eu-west-1-cache"
    error_message = "bucket URLs"
  }
  assert {
    condition     = !contains(keys(aws_lambda_function.fn["teams"].environment[0].variables), "ANTHROPIC_API_KEY")
    error_message = "teams gets no LLM key"
  }
  assert {
    condition     = length(aws_secretsmanager_secret.anthropic_api_key) == 0
    error_message = "no LLM secret without an LLM function"
  }
}

run "everything" {
  command = plan

  variables {
    function_overrides = {
      precompute = { reserved_concurrency = 2 }
      chat       = { memory_mb = 2048 }
    }
    cors_allowed_origins = ["https://app.example.com", "https://admin.example.com"]
  }

  assert {
    condition     = length(aws_lambda_function.fn) == 7
    error_message = "seven functions"
  }
  assert {
    condition     = aws_lambda_function.fn["precompute"].reserved_concurrent_executions == 2 && aws_lambda_function.fn["teams"].reserved_concurrent_executions == -1
    error_message = "reserved concurrency override"
  }
  assert {
    condition     = aws_lambda_function.fn["chat"].memory_size == 2048
    error_message = "memory override"
  }
  assert {
    condition     = aws_lambda_function.fn["chat"].environment[0].variables["CORS_ALLOWED_ORIGINS"] == "https://app.example.com,https://admin.example.com"
    error_message = "CORS origins"
  }
  assert {
    condition     = contains(keys(aws_lambda_function.fn["chat"].environment[0].variables), "ANTHROPIC_API_KEY")
    error_message = "chat gets the LLM key"
  }
  assert {
    condition     = aws_lambda_function.fn["generate"].timeout == 900 && aws_lambda_function.fn["teams"].timeout == 29
    error_message = "timeouts"
  }
}

run "openai_compatible" {
  command = plan

  variables {
    llm_provider      = "openai"
    llm_settings      = { OPENAI_BASE_URL = "https://llm.internal.example.com/v1", OPENAI_MODEL = "qwen2.5-coder" }
    chat_max_run_secs = 600
  }

  assert {
    condition     = length(aws_secretsmanager_secret.openai_api_key) == 1 && length(aws_secretsmanager_secret.anthropic_api_key) == 0
    error_message = "the OpenAI-compatible key's secret instead of Anthropic's"
  }
  assert {
    condition     = contains(keys(aws_lambda_function.fn["chat"].environment[0].variables), "OPENAI_API_KEY") && !contains(keys(aws_lambda_function.fn["chat"].environment[0].variables), "ANTHROPIC_API_KEY")
    error_message = "chat gets the OpenAI-compatible key"
  }
  assert {
    condition     = aws_lambda_function.fn["chat"].environment[0].variables["OPENAI_BASE_URL"] == "https://llm.internal.example.com/v1" && aws_lambda_function.fn["chat"].environment[0].variables["CHAT_MAX_RUN_SECS"] == "600"
    error_message = "LLM settings reach chat"
  }
}

run "a_run_must_end_before_the_timeout" {
  command = plan

  variables {
    function_overrides = { chat = { timeout_s = 600 } }
    chat_max_run_secs  = 600
  }

  expect_failures = [aws_lambda_function.fn]
}

run "api_keys_are_not_settings" {
  command = plan

  variables {
    llm_settings = { ANTHROPIC_API_KEY = "sk-ant-in-tfvars" }
  }

  expect_failures = [var.llm_settings]
}

run "least_privilege" {
  command = plan

  override_resource {
    target          = aws_s3_bucket.bridge["credentials"]
    override_during = plan
    values          = { arn = "arn:aws:s3:::test-credentials" }
  }

  override_resource {
    target          = aws_s3_bucket.bridge["dashboards"]
    override_during = plan
    values          = { arn = "arn:aws:s3:::test-dashboards" }
  }

  override_resource {
    target          = aws_s3_bucket.bridge["sessions"]
    override_during = plan
    values          = { arn = "arn:aws:s3:::test-sessions" }
  }

  override_resource {
    target          = aws_s3_bucket.bridge["cache"]
    override_during = plan
    values          = { arn = "arn:aws:s3:::test-cache" }
  }

  variables {
    function_overrides = {}
  }

  assert {
    condition     = [for s in data.aws_iam_policy_document.fn["teams"].statement : s.sid] == ["OwnLogGroup", "Tracing"]
    error_message = "teams touches no bucket and no key"
  }
  assert {
    condition     = [for s in data.aws_iam_policy_document.fn["catalog"].statement : s.sid] == ["OwnLogGroup", "Tracing", "ReadBuckets", "WriteBuckets", "BucketEncryption", "DispatchJobs", "EnvelopeEncryption"]
    error_message = "catalog reads credentials, writes the cache, runs its jobs and decrypts"
  }
  assert {
    condition     = toset(data.aws_iam_policy_document.fn["catalog"].statement[6].actions) == toset(["kms:Decrypt"])
    error_message = "catalog only decrypts"
  }
  assert {
    condition     = toset(data.aws_iam_policy_document.fn["catalog"].statement[2].resources) == toset(["arn:aws:s3:::test-credentials", "arn:aws:s3:::test-credentials/*", "arn:aws:s3:::test-cache", "arn:aws:s3:::test-cache/*"])
    error_message = "catalog reads the credentials and cache buckets only"
  }
  assert {
    condition     = toset(data.aws_iam_policy_document.fn["chat"].statement[3].resources) == toset(["arn:aws:s3:::test-sessions/*", "arn:aws:s3:::test-cache/*"])
    error_message = "chat writes sessions and cache only"
  }
  assert {
    condition     = toset(data.aws_iam_policy_document.fn["chat"].statement[2].resources) == toset(["arn:aws:s3:::test-credentials", "arn:aws:s3:::test-credentials/*", "arn:aws:s3:::test-sessions", "arn:aws:s3:::test-sessions/*", "arn:aws:s3:::test-cache", "arn:aws:s3:::test-cache/*"])
    error_message = "chat reads credentials, sessions and cache, not dashboards"
  }
  assert {
    condition     = [for s in data.aws_iam_policy_document.fn["chat"].statement : s.sid] == ["OwnLogGroup", "Tracing", "ReadBuckets", "WriteBuckets", "BucketEncryption", "EnvelopeEncryption"]
    error_message = "chat decrypts warehouse credentials and invokes no job function"
  }
}
