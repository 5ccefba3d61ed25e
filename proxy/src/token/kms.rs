//! Signing App JWTs with AWS KMS (`Sign`, RSASSA_PKCS1_V1_5_SHA_256 over a digest).
//!
//! Credentials come from the standard AWS chain (environment, web identity / IRSA,
//! ECS and instance metadata, profiles); the endpoint from `AWS_ENDPOINT_URL_KMS` or
//! `AWS_ENDPOINT_URL` when set. The client is built on first use.

use std::time::Duration;

use aws_sdk_kms::error::DisplayErrorContext;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{MessageType, SigningAlgorithmSpec};
use tokio::sync::OnceCell;

/// A KMS key that signs App JWTs; the private key never leaves KMS.
pub struct KmsSigner {
    key_id: String,
    region: String,
    timeout: Duration,
    client: OnceCell<aws_sdk_kms::Client>,
}

impl std::fmt::Debug for KmsSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl KmsSigner {
    /// A signer for `key_id` (id, alias or ARN) in `region`.
    pub fn new(key_id: String, region: String, timeout: Duration) -> Self {
        Self {
            key_id,
            region,
            timeout,
            client: OnceCell::new(),
        }
    }

    pub(crate) fn describe(&self) -> String {
        format!("AWS KMS key {} in {}", self.key_id, self.region)
    }

    async fn client(&self) -> &aws_sdk_kms::Client {
        self.client
            .get_or_init(|| async {
                // The SDK's default HTTPS client, on ring instead of aws-lc: native roots,
                // the runtime's connector settings and sleep, and the proxy of
                // `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY`.
                use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
                use aws_smithy_http_client::{Builder, ConnectorBuilder, proxy::ProxyConfig};
                let https = Builder::new().build_with_connector_fn(|settings, components| {
                    let mut connector = ConnectorBuilder::default()
                        .tls_provider(Provider::Rustls(CryptoMode::Ring));
                    connector.set_connector_settings(settings.cloned());
                    if let Some(components) = components {
                        connector.set_sleep_impl(components.sleep_impl());
                    }
                    connector.set_proxy_config(Some(ProxyConfig::from_env()));
                    connector.build()
                });
                let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .http_client(https)
                    .region(aws_config::Region::new(self.region.clone()))
                    .load()
                    .await;
                aws_sdk_kms::Client::new(&config)
            })
            .await
    }

    pub(crate) async fn sign(&self, input: &[u8]) -> Result<Vec<u8>, String> {
        let digest = ring::digest::digest(&ring::digest::SHA256, input);
        let request = async {
            self.client()
                .await
                .sign()
                .key_id(&self.key_id)
                .message(Blob::new(digest.as_ref()))
                .message_type(MessageType::Digest)
                .signing_algorithm(SigningAlgorithmSpec::RsassaPkcs1V15Sha256)
                .send()
                .await
        };
        let output = tokio::time::timeout(self.timeout, request)
            .await
            .map_err(|_| {
                format!(
                    "{} did not answer within {} s (github.app.signer.timeout)",
                    self.describe(),
                    self.timeout.as_secs()
                )
            })?
            .map_err(|e| {
                format!(
                    "{} refused to sign: {}",
                    self.describe(),
                    DisplayErrorContext(&e)
                )
            })?;
        output
            .signature()
            .map(|s| s.as_ref().to_vec())
            .ok_or_else(|| format!("{} returned no signature", self.describe()))
    }
}
