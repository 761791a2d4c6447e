//! The AWS side of the CLI: SDK clients and resource names, resolved once from the same environment
//! the Lambdas read.

use manifold_aws::AwsEnv;

use crate::CliError;

/// SDK clients and the deployment's resource names.
#[derive(Debug, Clone)]
pub struct Aws {
    pub env: AwsEnv,
    pub ddb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
}

impl Aws {
    /// Reads the resource names (failing with the missing variable's name) and loads the SDK config.
    pub async fn from_env() -> Result<Self, CliError> {
        let env = AwsEnv::from_env()?;
        let sdk = manifold_aws::sdk_config().await;
        Ok(Self::new(env, &sdk))
    }

    pub fn new(env: AwsEnv, sdk: &aws_config::SdkConfig) -> Self {
        Self { env, ddb: aws_sdk_dynamodb::Client::new(sdk), sqs: aws_sdk_sqs::Client::new(sdk) }
    }
}
