//! Asynchronous invocations of a Lambda function over the Lambda REST API, signed with
//! SigV4 (the jobs runner on Lambda: a function hands work to itself).

use std::time::{Duration, SystemTime};

use anyhow::Context;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::{
    http_request::{SignableBody, SignableRequest, SigningSettings, sign},
    sign::v4,
};

/// Invokes a Lambda function asynchronously through the Lambda REST API.
pub struct LambdaInvoker {
    http: reqwest::Client,
    endpoint: String,
    function: String,
    region: String,
    credentials: SharedCredentialsProvider,
}

impl LambdaInvoker {
    /// `function` in `region`, at `endpoint` (default `https://lambda.{region}.amazonaws.com`),
    /// with the credentials of the default AWS chain (the function's role on Lambda).
    pub async fn new(
        function: String,
        region: String,
        endpoint: Option<String>,
    ) -> anyhow::Result<Self> {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(region.clone()))
            .load()
            .await;
        let credentials = config
            .credentials_provider()
            .context("no AWS credentials to invoke Lambda with")?;
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .context("an HTTP client")?,
            endpoint: endpoint
                .unwrap_or_else(|| format!("https://lambda.{region}.amazonaws.com"))
                .trim_end_matches('/')
                .to_owned(),
            function,
            region,
            credentials,
        })
    }

    /// Like [`new`](Self::new), with these credentials (tests).
    pub fn with_credentials(
        function: String,
        region: String,
        endpoint: String,
        credentials: aws_credential_types::Credentials,
    ) -> Self {
        Self {
            http: reqwest::Client::new(),
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            function,
            region,
            credentials: SharedCredentialsProvider::new(credentials),
        }
    }

    /// `POST /2015-03-31/functions/{function}/invocations` with `X-Amz-Invocation-Type:
    /// Event`: Lambda queues the event and answers 202.
    pub async fn invoke(&self, event: &serde_json::Value) -> anyhow::Result<()> {
        let url = format!(
            "{}/2015-03-31/functions/{}/invocations",
            self.endpoint,
            percent(&self.function)
        );
        let body = serde_json::to_vec(event)?;
        let credentials = self
            .credentials
            .provide_credentials()
            .await
            .context("AWS credentials")?;
        let identity = credentials.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("lambda")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .context("signing parameters")?
            .into();
        let headers = [
            ("content-type", "application/json"),
            ("x-amz-invocation-type", "Event"),
        ];
        let signable = SignableRequest::new(
            "POST",
            &url,
            headers.iter().copied(),
            SignableBody::Bytes(&body),
        )
        .context("a signable request")?;
        let (instructions, _) = sign(signable, &params)
            .context("signing the invocation")?
            .into_parts();
        let mut request = http::Request::builder().method("POST").uri(&url);
        for (k, v) in headers {
            request = request.header(k, v);
        }
        let mut request = request.body(body).context("the invocation request")?;
        instructions.apply_to_request_http1x(&mut request);
        let request = reqwest::Request::try_from(request).context("the invocation request")?;
        let response = self
            .http
            .execute(request)
            .await
            .map_err(|e| anyhow::anyhow!("invoking {}: {}", self.function, e.without_url()))?;
        let status = response.status();
        anyhow::ensure!(
            status == reqwest::StatusCode::ACCEPTED,
            "Lambda answered {status} to an asynchronous invocation of {}",
            self.function
        );
        Ok(())
    }
}

/// A function name or ARN as a path segment.
fn percent(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}
