# Bridge's own Postgres, when var.database_managed (off by default: the database is external
# and DATABASE_URL points at it). An RDS for PostgreSQL instance inside the VPC the functions
# are attached to, with:
#   - automated daily backups kept var.database_backup_retention_days (default 14), which is
#     also the point-in-time recovery window: RDS archives the WAL, so a restore can target any
#     second of it, up to about five minutes ago (docs/deploys.md, "Restoring");
#   - storage, backups, snapshots, Performance Insights and the master password encrypted with
#     the bridge key; TLS required (rds.force_ssl);
#   - deletion protection, and a final snapshot if it is ever deleted anyway;
#   - optionally (var.database_proxy, on by default) an RDS Proxy in front: every Lambda
#     instance opens DATABASE_POOL_SIZE connections, and the proxy multiplexes them onto a
#     bounded pool of server connections (docs/capacity.md).
#
# Credentials: RDS keeps the master password itself, in a Secrets Manager secret encrypted with
# the bridge key (manage_master_user_password); it never passes through Terraform. The functions
# do not use the master user: create an application role once, put its credentials in the
# app-user secret (for the proxy) and its URL in <name_prefix>/database-url, as for an external
# database (docs/deploys.md, "A managed database"):
#
#   aws secretsmanager put-secret-value --secret-id <name_prefix>/database-app-user \
#     --secret-string '{"username":"bridge","password":"…"}'
#   aws secretsmanager put-secret-value --secret-id <name_prefix>/database-url \
#     --secret-string 'postgres://bridge:…@<database_proxy_endpoint or database_endpoint>:5432/bridge?sslmode=verify-full'

locals {
  database            = var.database_managed ? { bridge = true } : {}
  database_proxy      = var.database_managed && var.database_proxy ? { bridge = true } : {}
  database_subnet_ids = length(var.database_subnet_ids) > 0 ? var.database_subnet_ids : var.vpc_subnet_ids
}

resource "aws_db_subnet_group" "bridge" {
  for_each = local.database

  name        = "${var.name_prefix}-db"
  description = "Bridge: private subnets of its Postgres"
  subnet_ids  = local.database_subnet_ids

  lifecycle {
    precondition {
      condition     = length(local.database_subnet_ids) >= 2 && length(var.vpc_security_group_ids) > 0
      error_message = "database_managed needs the functions in a VPC (vpc_subnet_ids, vpc_security_group_ids) and at least two private subnets for the database (database_subnet_ids, else vpc_subnet_ids)."
    }
  }
}

data "aws_subnet" "database" {
  for_each = var.database_managed ? toset(local.database_subnet_ids) : toset([])

  id = each.value
}

# Postgres is reached only from the functions' security groups (and the proxy's, which is
# this one too), on 5432. No egress: the database opens no connection of its own.
resource "aws_security_group" "database" {
  for_each = local.database

  name        = "${var.name_prefix}-db"
  description = "Bridge: Postgres, reachable from the functions only"
  vpc_id      = one(distinct([for s in data.aws_subnet.database : s.vpc_id]))
}

resource "aws_vpc_security_group_ingress_rule" "database_from_functions" {
  for_each = var.database_managed ? toset(var.vpc_security_group_ids) : toset([])

  security_group_id            = aws_security_group.database["bridge"].id
  description                  = "Postgres from the Bridge functions"
  referenced_security_group_id = each.value
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
}

resource "aws_vpc_security_group_ingress_rule" "database_from_proxy" {
  for_each = local.database_proxy

  security_group_id            = aws_security_group.database["bridge"].id
  description                  = "Postgres from the RDS Proxy"
  referenced_security_group_id = aws_security_group.database["bridge"].id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
}

resource "aws_vpc_security_group_egress_rule" "proxy_to_database" {
  for_each = local.database_proxy

  security_group_id            = aws_security_group.database["bridge"].id
  description                  = "The RDS Proxy to Postgres"
  referenced_security_group_id = aws_security_group.database["bridge"].id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
}

resource "aws_db_parameter_group" "bridge" {
  for_each = local.database

  name        = "${var.name_prefix}-postgres${var.database_engine_version}"
  family      = "postgres${var.database_engine_version}"
  description = "Bridge: TLS only, slow statements and lock waits logged"

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  # Statements slower than a second, with their duration (not every statement: parameters
  # may hold customer data).
  parameter {
    name  = "log_min_duration_statement"
    value = "1000"
  }

  parameter {
    name  = "log_statement"
    value = "ddl"
  }

  parameter {
    name  = "log_lock_waits"
    value = "1"
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_iam_role" "database_monitoring" {
  for_each = local.database

  name        = "${var.name_prefix}-db-monitoring"
  description = "Enhanced Monitoring of Bridge's Postgres"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Action    = "sts:AssumeRole"
      Principal = { Service = "monitoring.rds.amazonaws.com" }
    }]
  })
}

resource "aws_iam_role_policy_attachment" "database_monitoring" {
  for_each = local.database

  role       = aws_iam_role.database_monitoring[each.key].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

resource "aws_db_instance" "bridge" {
  for_each = local.database

  identifier     = "${var.name_prefix}-db"
  engine         = "postgres"
  engine_version = var.database_engine_version
  instance_class = var.database_instance_class
  db_name        = "bridge"
  username       = "bridge_admin"

  # The master password lives in a secret RDS manages and rotates, never in Terraform.
  manage_master_user_password   = true
  master_user_secret_kms_key_id = aws_kms_key.bridge.arn

  allocated_storage     = var.database_allocated_storage_gb
  max_allocated_storage = var.database_max_allocated_storage_gb
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = aws_kms_key.bridge.arn

  multi_az               = var.database_multi_az
  db_subnet_group_name   = aws_db_subnet_group.bridge[each.key].name
  vpc_security_group_ids = [aws_security_group.database[each.key].id]
  publicly_accessible    = false
  parameter_group_name   = aws_db_parameter_group.bridge[each.key].name
  ca_cert_identifier     = "rds-ca-rsa2048-g1"

  # Automated backups and point-in-time recovery (the WAL is archived continuously).
  backup_retention_period  = var.database_backup_retention_days
  backup_window            = "02:00-03:00"
  maintenance_window       = "sun:03:30-sun:04:30"
  copy_tags_to_snapshot    = true
  delete_automated_backups = false

  deletion_protection       = true
  skip_final_snapshot       = false
  final_snapshot_identifier = "${var.name_prefix}-db-final"

  auto_minor_version_upgrade          = true
  iam_database_authentication_enabled = true
  enabled_cloudwatch_logs_exports     = ["postgresql", "upgrade"]

  performance_insights_enabled          = true
  performance_insights_kms_key_id       = aws_kms_key.bridge.arn
  performance_insights_retention_period = 7
  monitoring_interval                   = 60
  monitoring_role_arn                   = aws_iam_role.database_monitoring[each.key].arn

  depends_on = [aws_iam_role_policy_attachment.database_monitoring]
}

# ---- RDS Proxy -------------------------------------------------------------------------------

# The application role's credentials, for the proxy to log in with; created empty, filled out of
# band ({"username": "…", "password": "…"}) like the other secrets.
resource "aws_secretsmanager_secret" "database_app_user" {
  # checkov:skip=CKV2_AWS_57: the app role's password is rotated on the database side and put here out of band, as for database-url
  for_each = local.database_proxy

  name                    = "${var.name_prefix}/database-app-user"
  description             = "Bridge: the application role of its Postgres, for RDS Proxy ({username, password})"
  kms_key_id              = aws_kms_key.bridge.arn
  recovery_window_in_days = 7
}

data "aws_iam_policy_document" "proxy_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["rds.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "database_proxy" {
  for_each = local.database_proxy

  name               = "${var.name_prefix}-db-proxy"
  description        = "RDS Proxy of Bridge's Postgres: reads the app user's secret"
  assume_role_policy = data.aws_iam_policy_document.proxy_assume.json
}

data "aws_iam_policy_document" "database_proxy" {
  for_each = local.database_proxy

  statement {
    sid       = "AppUserSecret"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.database_app_user[each.key].arn]
  }

  statement {
    sid       = "AppUserSecretKey"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.bridge.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${var.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "database_proxy" {
  for_each = local.database_proxy

  name   = "${var.name_prefix}-db-proxy"
  role   = aws_iam_role.database_proxy[each.key].id
  policy = data.aws_iam_policy_document.database_proxy[each.key].json
}

resource "aws_db_proxy" "bridge" {
  for_each = local.database_proxy

  name                   = "${var.name_prefix}-db"
  engine_family          = "POSTGRESQL"
  role_arn               = aws_iam_role.database_proxy[each.key].arn
  vpc_subnet_ids         = local.database_subnet_ids
  vpc_security_group_ids = [aws_security_group.database[each.key].id]
  require_tls            = true
  idle_client_timeout    = 1800
  debug_logging          = false

  auth {
    auth_scheme = "SECRETS"
    iam_auth    = "DISABLED"
    secret_arn  = aws_secretsmanager_secret.database_app_user[each.key].arn
  }

  depends_on = [aws_iam_role_policy.database_proxy]
}

# The proxy may use up to this share of the instance's max_connections; clients beyond it queue
# (for connection_borrow_timeout) instead of failing with "too many connections".
resource "aws_db_proxy_default_target_group" "bridge" {
  for_each = local.database_proxy

  db_proxy_name = aws_db_proxy.bridge[each.key].name

  connection_pool_config {
    max_connections_percent      = 80
    max_idle_connections_percent = 40
    connection_borrow_timeout    = 30
  }
}

resource "aws_db_proxy_target" "bridge" {
  for_each = local.database_proxy

  db_proxy_name          = aws_db_proxy.bridge[each.key].name
  target_group_name      = aws_db_proxy_default_target_group.bridge[each.key].name
  db_instance_identifier = aws_db_instance.bridge[each.key].identifier
}
