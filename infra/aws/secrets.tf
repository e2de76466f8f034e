# DATABASE_URL and ANTHROPIC_API_KEY live in Secrets Manager. Terraform creates the secrets
# empty; their values are put out of band (never in code, variables or tfvars):
#
#   aws secretsmanager put-secret-value --secret-id <name_prefix>/database-url --secret-string 'postgres://…'
#
# How the value reaches the function: Lambda has no native secret injection for environment
# variables, and the functions read plain DATABASE_URL / ANTHROPIC_API_KEY. So Terraform reads
# the current secret value at deploy time (a data source; Terraform treats it as sensitive) and
# sets it in the function's environment, which Lambda encrypts with the bridge key. Consequences,
# accepted on purpose:
#   - the value is in the Terraform state: keep the state in an encrypted, access-controlled
#     backend;
#   - anyone allowed lambda:GetFunctionConfiguration and kms:Decrypt on the key can read it;
#   - rotating the secret takes effect at the next `terraform apply`.
# The alternative (the functions fetching the secret at start-up through the Parameters and
# Secrets extension or the SDK) needs code the functions do not have yet.
#
# First deployment, because the data sources below need a secret version to exist:
#   terraform apply -target=aws_secretsmanager_secret.database_url -target=aws_secretsmanager_secret.anthropic_api_key
#   aws secretsmanager put-secret-value …   (both secrets)
#   terraform apply

resource "aws_secretsmanager_secret" "database_url" {
  # checkov:skip=CKV2_AWS_57: the URL's password is rotated on the database side and put here out of band; no rotation Lambda exists for it
  name                    = "${var.name_prefix}/database-url"
  description             = "Bridge: Postgres connection URL (DATABASE_URL)"
  kms_key_id              = aws_kms_key.bridge.arn
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret" "anthropic_api_key" {
  # checkov:skip=CKV2_AWS_57: a third-party API key; it is rotated in the vendor's console and put here out of band
  count = length(local.llm_functions) > 0 ? 1 : 0

  name                    = "${var.name_prefix}/anthropic-api-key"
  description             = "Bridge: Anthropic API key (ANTHROPIC_API_KEY) for chat and generate"
  kms_key_id              = aws_kms_key.bridge.arn
  recovery_window_in_days = 7
}

data "aws_secretsmanager_secret_version" "database_url" {
  secret_id = aws_secretsmanager_secret.database_url.id
}

data "aws_secretsmanager_secret_version" "anthropic_api_key" {
  count = length(aws_secretsmanager_secret.anthropic_api_key)

  secret_id = aws_secretsmanager_secret.anthropic_api_key[0].id
}
