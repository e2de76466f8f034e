# The migrate deploy step (functions/migrate, docs/deploys.md): a Lambda function that applies
# the migrations and then seeds the prompt blocks, invoked by Terraform itself
# (aws_lambda_invocation) before any function is created or updated, so that no new code takes
# traffic before the schema it needs exists. The functions never migrate.
#
# When it runs: on the first apply, and again whenever its artifact (the embedded migrations
# and prompts are part of the binary) or the database URL changes. A failed migration fails the
# invocation and the apply stops there: the functions keep their previous code. Two applies
# racing are serialised by the migration's Postgres advisory lock (common/storage).

locals {
  migrate        = module.catalogue.deploy_steps.migrate
  migrate_name   = "${var.name_prefix}-migrate"
  migrate_zip    = "${local.artifacts_dir}/migrate/bootstrap.zip"
  migrate_needed = var.run_migrations ? { migrate = local.migrate } : {}
}

resource "aws_cloudwatch_log_group" "migrate" {
  for_each = local.migrate_needed

  name              = "/aws/lambda/${local.migrate_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.bridge.arn
}

resource "aws_iam_role" "migrate" {
  for_each = local.migrate_needed

  name               = local.migrate_name
  description        = "Execution role of the Bridge migrate deploy step"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

# Its log group and X-Ray; no bucket, no key (it reaches only Postgres).
data "aws_iam_policy_document" "migrate" {
  for_each = local.migrate_needed

  statement {
    sid       = "OwnLogGroup"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.migrate[each.key].arn}:*"]
  }

  statement {
    sid       = "Tracing"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "migrate" {
  for_each = local.migrate_needed

  name   = local.migrate_name
  role   = aws_iam_role.migrate[each.key].id
  policy = data.aws_iam_policy_document.migrate[each.key].json
}

resource "aws_iam_role_policy_attachment" "migrate_vpc" {
  for_each = local.in_vpc ? local.migrate_needed : {}

  role       = aws_iam_role.migrate[each.key].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
}

resource "aws_lambda_function" "migrate" {
  # checkov:skip=CKV_AWS_116: invoked synchronously by Terraform only (aws_lambda_invocation), which reports a failure by failing the apply; nothing would read a DLQ
  # checkov:skip=CKV_AWS_117: VPC attachment follows the functions' (var.vpc_subnet_ids): needed only when the database is private
  # checkov:skip=CKV_AWS_272: artifacts are built and uploaded by this stack from cargo lambda zips; code signing needs an AWS Signer pipeline that does not exist yet
  for_each = local.migrate_needed

  function_name = local.migrate_name
  description   = "Bridge deploy step: migrations and prompt blocks"
  role          = aws_iam_role.migrate[each.key].arn

  runtime       = "provided.al2023"
  architectures = ["arm64"]
  handler       = "bootstrap"

  filename         = local.migrate_zip
  source_code_hash = filebase64sha256(local.migrate_zip)

  memory_size = each.value.memory_mb
  timeout     = min(each.value.timeout_s, 900)
  # Unreserved: concurrent invocations (two applies at once) wait on the migration's
  # advisory lock in Postgres, and the second finds nothing left to apply.
  reserved_concurrent_executions = -1

  kms_key_arn = aws_kms_key.bridge.arn

  environment {
    # The settings every function validates at start (production refuses to start without
    # them), and the database.
    variables = merge(local.common_env, local.database_env)
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

  depends_on = [
    aws_cloudwatch_log_group.migrate,
    aws_iam_role_policy.migrate,
    aws_iam_role_policy_attachment.migrate_vpc,
  ]
}

# The step itself. Replaced (so invoked again) when the artifact or the database changes; the
# payload is events/migrate/deploy.json's. Its result (the migrations applied, the prompt
# blocks changed) is in output.migration_report.
resource "aws_lambda_invocation" "migrate" {
  for_each = local.migrate_needed

  function_name = aws_lambda_function.migrate[each.key].function_name
  input = jsonencode({
    source = "terraform"
    step   = "migrate"
    reason = "deploy"
  })

  triggers = {
    code     = aws_lambda_function.migrate[each.key].source_code_hash
    database = sha256(data.aws_secretsmanager_secret_version.database_url.secret_string)
  }

  # With a managed database, it must be up (and reachable through its proxy) first.
  depends_on = [aws_db_instance.bridge, aws_db_proxy_target.bridge]
}
