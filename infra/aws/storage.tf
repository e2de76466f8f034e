# One bucket per purpose (credentials, dashboards, sessions, cache), handed to the functions as
# CREDENTIALS_BUCKET=s3://<name> and so on. Private, owner-enforced, SSE-KMS with the bridge
# key, TLS only. Credentials and dashboards keep old versions for a while; sessions and cache
# expire. Bridge never lists a bucket: Postgres is the directory.

locals {
  buckets           = module.catalogue.buckets
  versioned_buckets = { for purpose, b in local.buckets : purpose => b if b.versioned }
  expiring_buckets  = { for purpose, b in local.buckets : purpose => b if b.expire_days != null }
}

resource "aws_s3_bucket" "bridge" {
  # checkov:skip=CKV_AWS_144: cross-region replication is a disaster-recovery choice outside this stack; cache and sessions are disposable, credentials and dashboards are versioned
  # checkov:skip=CKV2_AWS_62: nothing consumes bucket events; Postgres is the directory of every object
  # checkov:skip=CKV_AWS_21: credentials and dashboards are versioned (aws_s3_bucket_versioning.bridge); sessions and cache expire and are not worth versioning; checkov cannot tell the for_each instances apart
  # checkov:skip=CKV_AWS_18: server access logs are optional, to an existing log bucket (var.access_logs_bucket, aws_s3_bucket_logging.bridge); CloudTrail data events are the alternative
  for_each = local.buckets

  bucket = "${local.bucket_name_prefix}-${each.key}"
}

resource "aws_s3_bucket_public_access_block" "bridge" {
  for_each = local.buckets

  bucket                  = aws_s3_bucket.bridge[each.key].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "bridge" {
  for_each = local.buckets

  bucket = aws_s3_bucket.bridge[each.key].id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "bridge" {
  for_each = local.buckets

  bucket = aws_s3_bucket.bridge[each.key].id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.bridge.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_versioning" "bridge" {
  for_each = local.versioned_buckets

  bucket = aws_s3_bucket.bridge[each.key].id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "bridge" {
  for_each = local.buckets

  bucket = aws_s3_bucket.bridge[each.key].id

  rule {
    id     = "abort-incomplete-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  dynamic "rule" {
    for_each = local.buckets[each.key].versioned ? [1] : []

    content {
      id     = "expire-old-versions"
      status = "Enabled"

      filter {}

      noncurrent_version_expiration {
        noncurrent_days = var.noncurrent_version_expire_days
      }

      expiration {
        expired_object_delete_marker = true
      }
    }
  }

  dynamic "rule" {
    for_each = local.buckets[each.key].expire_days != null ? [local.buckets[each.key].expire_days] : []

    content {
      id     = "expire-objects"
      status = "Enabled"

      filter {}

      expiration {
        days = rule.value
      }
    }
  }

  # Lifecycle rules on a versioned bucket need versioning configured first.
  depends_on = [aws_s3_bucket_versioning.bridge]
}

resource "aws_s3_bucket_logging" "bridge" {
  for_each = var.access_logs_bucket == null ? {} : local.buckets

  bucket        = aws_s3_bucket.bridge[each.key].id
  target_bucket = var.access_logs_bucket
  target_prefix = "${aws_s3_bucket.bridge[each.key].id}/"
}

resource "aws_s3_bucket_policy" "bridge" {
  for_each = local.buckets

  bucket = aws_s3_bucket.bridge[each.key].id
  policy = data.aws_iam_policy_document.bucket[each.key].json

  depends_on = [aws_s3_bucket_public_access_block.bridge]
}

data "aws_iam_policy_document" "bucket" {
  for_each = local.buckets

  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.bridge[each.key].arn,
      "${aws_s3_bucket.bridge[each.key].arn}/*",
    ]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  statement {
    sid     = "DenyOldTLS"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.bridge[each.key].arn,
      "${aws_s3_bucket.bridge[each.key].arn}/*",
    ]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "NumericLessThan"
      variable = "s3:TlsVersion"
      values   = ["1.2"]
    }
  }
}
