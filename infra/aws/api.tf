# One HTTP API (payload format 2.0) in front of the non-streaming functions: a route per
# "METHOD /path" of the catalogue to its function's integration. API Gateway understands the
# catalogue's `{param}` segments natively and prefers literal segments over parameters (a
# route like /v1/chat/sessions/current would win over /v1/chat/sessions/{id}; chat itself is
# not here, being a streaming function: see functions.tf).
#
# The $default route goes to the default function (teams): it answers unknown paths with the
# API's own problem+json 404, wrong methods with 405, GET /health and GET /ready, and CORS
# preflights (OPTIONS matches no route; the functions answer preflights themselves from
# CORS_ALLOWED_ORIGINS, so the API has no CORS configuration of its own).

locals {
  api_routes = merge([
    for name, f in local.api_functions : {
      for r in f.routes : r.key => name
    }
  ]...)
}

resource "aws_apigatewayv2_api" "http" {
  name          = "${var.name_prefix}-http-api"
  description   = "Bridge API"
  protocol_type = "HTTP"
}

resource "aws_apigatewayv2_integration" "fn" {
  for_each = local.api_functions

  api_id                 = aws_apigatewayv2_api.http.id
  integration_type       = "AWS_PROXY"
  integration_method     = "POST"
  integration_uri        = aws_lambda_function.fn[each.key].invoke_arn
  payload_format_version = "2.0"
  timeout_milliseconds   = 30000
}

resource "aws_apigatewayv2_authorizer" "jwt" {
  count = var.api_jwt_authorizer ? 1 : 0

  api_id           = aws_apigatewayv2_api.http.id
  name             = "${var.name_prefix}-jwt"
  authorizer_type  = "JWT"
  identity_sources = ["$request.header.Authorization"]

  jwt_configuration {
    issuer   = var.auth_issuer
    audience = [var.auth_audience]
  }
}

resource "aws_apigatewayv2_route" "fn" {
  for_each = local.api_routes

  api_id             = aws_apigatewayv2_api.http.id
  route_key          = each.key
  target             = "integrations/${aws_apigatewayv2_integration.fn[each.value].id}"
  authorization_type = var.api_jwt_authorizer ? "JWT" : "NONE"
  authorizer_id      = var.api_jwt_authorizer ? aws_apigatewayv2_authorizer.jwt[0].id : null
}

resource "aws_apigatewayv2_route" "default" {
  # checkov:skip=CKV_AWS_309: the catch-all must stay unauthenticated for /health, /ready and CORS preflights; the function still verifies the JWT on every /v1 route it serves
  count = local.default_function == null ? 0 : 1

  api_id             = aws_apigatewayv2_api.http.id
  route_key          = "$default"
  target             = "integrations/${aws_apigatewayv2_integration.fn[local.default_function].id}"
  authorization_type = "NONE"
}

resource "aws_apigatewayv2_stage" "default" {
  api_id      = aws_apigatewayv2_api.http.id
  name        = "$default"
  auto_deploy = true

  default_route_settings {
    throttling_burst_limit   = var.api_throttling_burst_limit
    throttling_rate_limit    = var.api_throttling_rate_limit
    detailed_metrics_enabled = true
  }

  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.api_access.arn
    format = jsonencode({
      requestId          = "$context.requestId"
      requestTime        = "$context.requestTime"
      sourceIp           = "$context.identity.sourceIp"
      httpMethod         = "$context.httpMethod"
      path               = "$context.path"
      routeKey           = "$context.routeKey"
      status             = "$context.status"
      protocol           = "$context.protocol"
      responseLength     = "$context.responseLength"
      responseLatency    = "$context.responseLatency"
      integrationLatency = "$context.integrationLatency"
      integrationError   = "$context.integrationErrorMessage"
      authorizerError    = "$context.authorizer.error"
    })
  }
}

resource "aws_lambda_permission" "api" {
  for_each = local.api_functions

  statement_id  = "AllowHttpApi"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.fn[each.key].function_name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.http.execution_arn}/*/*"
}
