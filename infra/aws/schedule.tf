# Scheduled functions (precompute) are invoked by an EventBridge rule with the plain scheduled
# event ("source": "aws.events", "detail-type": "Scheduled Event"); the function tells it apart
# from an HTTP event. EventBridge invokes asynchronously. A failed run is not retried by Lambda
# (the next tick is the retry, and a late warm-up is worth little); delivery itself (e.g. when
# throttled) is retried for up to 10 minutes.

resource "aws_cloudwatch_event_rule" "schedule" {
  for_each = local.scheduled_functions

  name                = "${var.name_prefix}-${each.key}"
  description         = "Bridge: runs ${each.key} on a schedule"
  schedule_expression = var.precompute_schedule
  state               = var.precompute_schedule_enabled ? "ENABLED" : "DISABLED"
}

resource "aws_cloudwatch_event_target" "schedule" {
  for_each = local.scheduled_functions

  rule = aws_cloudwatch_event_rule.schedule[each.key].name
  arn  = aws_lambda_function.fn[each.key].arn

  retry_policy {
    maximum_retry_attempts       = 2
    maximum_event_age_in_seconds = 600
  }
}

resource "aws_lambda_permission" "schedule" {
  for_each = local.scheduled_functions

  statement_id  = "AllowEventBridgeSchedule"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.fn[each.key].function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.schedule[each.key].arn
}

resource "aws_lambda_function_event_invoke_config" "schedule" {
  for_each = local.scheduled_functions

  function_name          = aws_lambda_function.fn[each.key].function_name
  maximum_retry_attempts = 0
}
