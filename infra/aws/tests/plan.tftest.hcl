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
}

variables {
  auth_issuer   = "https://id.example.com/"
  auth_audience = "bridge"
  artifacts_dir = "./tests/fake-artifacts"
}

run "teams_only" {
  command = plan

  assert {
    condition     = keys(aws_lambda_function.fn) == ["teams"]
    error_message = "only teams is enabled by default"
  }
  assert {
    condition     = length(aws_apigatewayv2_route.fn) == 8
    error_message = "teams has 8 routes"
  }
  assert {
    condition     = length(aws_lambda_function_url.stream) == 0 && length(aws_cloudwatch_event_rule.schedule) == 0
    error_message = "no streaming or scheduled function by default"
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
      connections = { enabled = true }
      catalog     = { enabled = true }
      generate    = { enabled = true }
      data        = { enabled = true }
      precompute  = { enabled = true, reserved_concurrency = 2 }
      chat        = { enabled = true }
    }
    cors_allowed_origins = ["https://app.example.com", "https://admin.example.com"]
  }

  assert {
    condition     = length(aws_lambda_function.fn) == 7
    error_message = "seven functions"
  }
  assert {
    condition     = toset(keys(aws_lambda_function_url.stream)) == toset(["chat", "generate"])
    error_message = "chat and generate stream"
  }
  assert {
    condition     = length(aws_apigatewayv2_route.fn) == 8 + 5 + 4 + 2 + 1
    error_message = "API routes of the non-streaming functions"
  }
  assert {
    condition     = keys(aws_cloudwatch_event_rule.schedule) == ["precompute"]
    error_message = "precompute is scheduled"
  }
  assert {
    condition     = aws_lambda_function.fn["precompute"].reserved_concurrent_executions == 2 && aws_lambda_function.fn["teams"].reserved_concurrent_executions == -1
    error_message = "reserved concurrency override"
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
    function_overrides = {
      connections = { enabled = true }
      catalog     = { enabled = true }
      chat        = { enabled = true }
    }
  }

  assert {
    condition     = [for s in data.aws_iam_policy_document.fn["teams"].statement : s.sid] == ["OwnLogGroup", "Tracing"]
    error_message = "teams touches no bucket and no key"
  }
  assert {
    condition     = [for s in data.aws_iam_policy_document.fn["catalog"].statement : s.sid] == ["OwnLogGroup", "Tracing", "ReadBuckets", "BucketEncryption", "EnvelopeEncryption"]
    error_message = "catalog reads credentials and decrypts"
  }
  assert {
    condition     = toset(data.aws_iam_policy_document.fn["catalog"].statement[4].actions) == toset(["kms:Decrypt"])
    error_message = "catalog only decrypts"
  }
  assert {
    condition     = toset(data.aws_iam_policy_document.fn["catalog"].statement[2].resources) == toset(["arn:aws:s3:::test-credentials", "arn:aws:s3:::test-credentials/*"])
    error_message = "catalog reads the credentials bucket only"
  }
  assert {
    condition     = toset(data.aws_iam_policy_document.fn["chat"].statement[3].resources) == toset(["arn:aws:s3:::test-sessions/*", "arn:aws:s3:::test-cache/*"])
    error_message = "chat writes sessions and cache only"
  }
}
