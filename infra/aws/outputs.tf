output "api_url" {
  description = "Base URL of the HTTP API (every non-streaming function's routes)."
  value       = aws_apigatewayv2_stage.default.invoke_url
}

output "function_urls" {
  description = "Base URL of each streaming function (chat, generate): all of that function's routes are served there."
  value       = { for name, url in aws_lambda_function_url.stream : name => url.function_url }
}

output "chat_url" {
  description = "Base URL of the chat routes (/v1/chat/..., /v1/observability/...): chat's streaming Function URL, with a trailing slash. null when chat is not enabled."
  value       = try(aws_lambda_function_url.stream["chat"].function_url, null)
}

output "function_names" {
  description = "Lambda function name of each deployed function."
  value       = { for name, f in aws_lambda_function.fn : name => f.function_name }
}

output "routes" {
  description = "Which function serves which route, and through which entry point."
  value = {
    for name, f in local.functions : name => {
      entry  = f.streaming ? "function_url" : "api"
      routes = [for r in f.routes : r.key]
    }
  }
}

output "bucket_names" {
  description = "Bucket name of each purpose."
  value       = { for purpose, b in aws_s3_bucket.bridge : purpose => b.bucket }
}

output "kms_key_arn" {
  description = "ARN of the bridge key."
  value       = aws_kms_key.bridge.arn
}

output "kms_key_uri" {
  description = "KMS_KEY_URI as the functions receive it."
  value       = "awskms://${aws_kms_key.bridge.arn}"
}

output "secret_arns" {
  description = "Secrets whose values must be put out of band (see secrets.tf)."
  value = merge(
    { database_url = aws_secretsmanager_secret.database_url.arn },
    { for s in aws_secretsmanager_secret.anthropic_api_key : "anthropic_api_key" => s.arn },
    { for s in aws_secretsmanager_secret.openai_api_key : "openai_api_key" => s.arn },
  )
}

output "migration_report" {
  description = "What the last migrate deploy step did (the migrations applied, the prompt blocks changed), as the function answered; null when run_migrations is off."
  value       = try(jsondecode(aws_lambda_invocation.migrate["migrate"].result), null)
}

output "database_endpoint" {
  description = "host:port of the managed Postgres (database_managed); null when the database is external."
  value       = try(aws_db_instance.bridge["bridge"].endpoint, null)
}

output "database_proxy_endpoint" {
  description = "Host of the RDS Proxy in front of the managed Postgres: what DATABASE_URL should name (database_proxy); null without one."
  value       = try(aws_db_proxy.bridge["bridge"].endpoint, null)
}

output "database_master_secret_arn" {
  description = "Secrets Manager secret holding the managed Postgres's master credentials (kept and rotated by RDS), to create the application role once; null when the database is external."
  value       = try(aws_db_instance.bridge["bridge"].master_user_secret[0].secret_arn, null)
}
