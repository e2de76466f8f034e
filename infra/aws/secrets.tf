# DATABASE_URL and the LLM provider's key (ANTHROPIC_API_KEY or OPENAI_API_KEY) live in
# Secrets Manager. Terraform creates the secrets empty; their values are put out of band (never
# in code, variables or tfvars):
#
#   aws secretsmanager put-secret-value --secret-id <name_prefix>/database-url --secret-string 'postgres://…'
#
# How the value reaches the function: Lambda has no native secret injection for environment
# variables, and the functions read plain DATABASE_URL / ANTHROPIC_API_KEY / OPENAI_API_KEY. So
# Terraform reads the current secret value at deploy time (a data source; Terraform treats it as
# sensitive) and sets it in the function's environment, which Lambda encrypts with the bridge
# key. Consequences, accepted on purpose:
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
# With llm_provider = "openai", target and fill aws_secretsmanager_secret.openai_api_key instead
# of the Anthropic one; with "builtin" there is no LLM secret.

resource "aws_secretsmanager_secret" "database_url" {
  # checkov:skip=CKV2_AWS_57: the URL's password is rotated on the database side and put here out of band; no rotation Lambda exists for it
  name                    = "${var.name_prefix}/database-url"
  description             = "Bridge: Postgres connection URL (DATABASE_URL)"
  kms_key_id              = aws_kms_key.bridge.arn
  recovery_window_in_days = 7
}

# The LLM provider's key, for the llm functions (chat, generate), per var.llm_provider: only
# the secret of the configured provider exists (none for builtin).
resource "aws_secretsmanager_secret" "anthropic_api_key" {
  # checkov:skip=CKV2_AWS_57: a third-party API key; it is rotated in the vendor's console and put here out of band
  count = length(local.llm_functions) > 0 && var.llm_provider == "anthropic" ? 1 : 0

  name                    = "${var.name_prefix}/anthropic-api-key"
  description             = "Bridge: Anthropic API key (ANTHROPIC_API_KEY) for chat and generate"
  kms_key_id              = aws_kms_key.bridge.arn
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret" "openai_api_key" {
  # checkov:skip=CKV2_AWS_57: a third-party API key (or any value, for a server without keys); it is rotated at the vendor and put here out of band
  count = length(local.llm_functions) > 0 && var.llm_provider == "openai" ? 1 : 0

  name                    = "${var.name_prefix}/openai-api-key"
  description             = "Bridge: OpenAI-compatible API key (OPENAI_API_KEY) for chat and generate"
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

data "aws_secretsmanager_secret_version" "openai_api_key" {
  count = length(aws_secretsmanager_secret.openai_api_key)

  secret_id = aws_secretsmanager_secret.openai_api_key[0].id
}
