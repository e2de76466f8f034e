# One customer-managed key, "the bridge key":
#   - envelope encryption of warehouse credentials (the functions wrap per-credential data
#     keys with it: KMS_KEY_URI=awskms://<arn>),
#   - SSE-KMS of the four buckets, the Secrets Manager secrets, the functions' environment
#     and the CloudWatch log groups.
# Who may use it is decided by IAM (the key policy delegates to the account), except for
# CloudWatch Logs, which the key policy names itself.

resource "aws_kms_key" "bridge" {
  description             = "Bridge: envelope encryption of credentials; buckets, secrets, logs at rest"
  enable_key_rotation     = true
  rotation_period_in_days = 365
  deletion_window_in_days = var.kms_deletion_window_days
  policy                  = data.aws_iam_policy_document.kms.json
}

resource "aws_kms_alias" "bridge" {
  name          = "alias/${var.name_prefix}"
  target_key_id = aws_kms_key.bridge.key_id
}

data "aws_iam_policy_document" "kms" {
  # checkov:skip=CKV_AWS_109: a key policy's "*" resource is this key alone; the root statement is AWS's default delegation to IAM
  # checkov:skip=CKV_AWS_111: a key policy's "*" resource is this key alone; the root statement is AWS's default delegation to IAM
  # checkov:skip=CKV_AWS_356: a key policy's "*" resource is this key alone; the root statement is AWS's default delegation to IAM
  statement {
    sid       = "DelegateToIAM"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  statement {
    sid = "CloudWatchLogs"
    actions = [
      "kms:Encrypt*",
      "kms:Decrypt*",
      "kms:ReEncrypt*",
      "kms:GenerateDataKey*",
      "kms:Describe*",
    ]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["logs.${var.region}.amazonaws.com"]
    }

    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values = [
        "arn:${local.partition}:logs:${var.region}:${local.account_id}:log-group:/aws/lambda/${var.name_prefix}-*",
        "arn:${local.partition}:logs:${var.region}:${local.account_id}:log-group:/aws/apigateway/${var.name_prefix}-*",
      ]
    }
  }
}
