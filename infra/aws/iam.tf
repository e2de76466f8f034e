# One execution role per function, holding only what that function's catalogue entry grants:
# its own log group, X-Ray, the buckets it names (read, or read and write) and the bridge key
# (through S3 for those buckets; directly only for envelope encryption).

locals {
  bucket_arns = { for purpose, b in aws_s3_bucket.bridge : purpose => b.arn }

  access = {
    for name, f in local.functions : name => {
      read_buckets  = [for purpose, mode in f.buckets : local.bucket_arns[purpose]]
      write_buckets = [for purpose, mode in f.buckets : local.bucket_arns[purpose] if mode == "readwrite"]
      kms_actions = {
        none    = []
        decrypt = ["kms:Decrypt"]
        # Wrapping a fresh data key: GenerateDataKey, or Encrypt of a locally generated one
        # (Cloud KMS has no GenerateDataKey, so a cloud-neutral key ring may well use Encrypt).
        # Trim to the one the key-ring adapter calls once it exists.
        encrypt_decrypt = ["kms:Decrypt", "kms:GenerateDataKey"]
      }[f.kms]
    }
  }
}

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "fn" {
  for_each = local.functions

  name               = "${var.name_prefix}-${each.key}"
  description        = "Execution role of the Bridge ${each.key} function"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

data "aws_iam_policy_document" "fn" {
  for_each = local.functions

  statement {
    sid       = "OwnLogGroup"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.fn[each.key].arn}:*"]
  }

  # X-Ray accepts no resource-level restriction on these two actions.
  statement {
    sid       = "Tracing"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"]
  }

  # ListBucket is granted only so that a missing key answers 404 rather than 403.
  dynamic "statement" {
    for_each = length(local.access[each.key].read_buckets) > 0 ? [1] : []

    content {
      sid       = "ReadBuckets"
      actions   = ["s3:GetObject", "s3:ListBucket"]
      resources = concat(local.access[each.key].read_buckets, [for arn in local.access[each.key].read_buckets : "${arn}/*"])
    }
  }

  dynamic "statement" {
    for_each = length(local.access[each.key].write_buckets) > 0 ? [1] : []

    content {
      sid       = "WriteBuckets"
      actions   = ["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
      resources = [for arn in local.access[each.key].write_buckets : "${arn}/*"]
    }
  }

  # SSE-KMS: S3 calls KMS on the caller's behalf, for this function's buckets only.
  dynamic "statement" {
    for_each = length(local.access[each.key].read_buckets) > 0 ? [1] : []

    content {
      sid       = "BucketEncryption"
      actions   = length(local.access[each.key].write_buckets) > 0 ? ["kms:Decrypt", "kms:GenerateDataKey"] : ["kms:Decrypt"]
      resources = [aws_kms_key.bridge.arn]

      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["s3.${var.region}.amazonaws.com"]
      }

      condition {
        test     = "ArnLike"
        variable = "kms:EncryptionContext:aws:s3:arn"
        values   = concat(local.access[each.key].read_buckets, [for arn in local.access[each.key].read_buckets : "${arn}/*"])
      }
    }
  }

  # Handing jobs (scans) to the job function: an asynchronous invocation of it.
  dynamic "statement" {
    for_each = local.functions[each.key].jobs != "none" && local.job_function != null ? [1] : []

    content {
      sid       = "DispatchJobs"
      actions   = ["lambda:InvokeFunction"]
      resources = [local.job_function_arn]
    }
  }

  # Envelope encryption of warehouse credentials (KMS_KEY_URI).
  dynamic "statement" {
    for_each = length(local.access[each.key].kms_actions) > 0 ? [1] : []

    content {
      sid       = "EnvelopeEncryption"
      actions   = local.access[each.key].kms_actions
      resources = [aws_kms_key.bridge.arn]

      # common/platform/src/keyring.rs binds every data key to this context (plus team and object ids).
      condition {
        test     = "StringEquals"
        variable = "kms:EncryptionContext:bridge:purpose"
        values   = ["warehouse-credential"]
      }
    }
  }
}

resource "aws_iam_role_policy" "fn" {
  for_each = local.functions

  name   = "${var.name_prefix}-${each.key}"
  role   = aws_iam_role.fn[each.key].id
  policy = data.aws_iam_policy_document.fn[each.key].json
}

# Only when attached to a VPC: the ENI permissions Lambda needs there.
resource "aws_iam_role_policy_attachment" "vpc" {
  for_each = local.in_vpc ? local.functions : {}

  role       = aws_iam_role.fn[each.key].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
}
