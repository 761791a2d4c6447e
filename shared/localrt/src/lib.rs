//! The local Lambda runtime: every function of the transformed template runs as its own REAL built
//! binary (`target/debug/<binary>`), started as Lambda starts it, under an embedded Lambda Runtime API
//! on loopback, with only the environment the template gives it, resolved to the local stack's
//! physical names (moto's CloudFormation), plus Lambda's reserved variables and the local AWS endpoint
//! and credentials.
//!
//! - [`Runtime::load`] reads `.local/template.json` and the stack, and prepares one [`Function`] per
//!   `AWS::Lambda::Function` (the push binary once per channel, each with its own `CHANNEL`).
//! - [`Function::invoke`] runs one invocation (Timeout enforced; a timed-out or crashed process is
//!   killed, and the next invocation pays a new cold start).
//! - [`wiring`] emulates what the template wires to the functions: the HTTP API routes (payload 2.0,
//!   SigV4 for IAM-authorized routes), the SQS event source mappings, the schedules.

pub mod events;
pub mod function;
pub mod stack;
pub mod template;
pub mod wiring;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
};

pub use function::{Function, FunctionConfig, FunctionError, LogSink};
pub use stack::{ResolveError, Stack};
pub use template::{Template, TemplateError};

/// Something the runtime cannot start from.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error("{function}: environment variable {variable}: {source}")]
    Variable { function: String, variable: String, source: ResolveError },
    #[error("{0}")]
    Other(String),
}

/// The local AWS endpoint and credentials every function is given (what the execution role's
/// credentials and the regional endpoints are in AWS).
#[derive(Debug, Clone)]
pub struct LocalAws {
    pub endpoint: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl LocalAws {
    /// `AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (moto's defaults otherwise).
    pub fn from_env() -> Self {
        let var = |k: &str, default: &str| {
            std::env::var(k).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_owned())
        };
        Self {
            endpoint: var("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
            region: var("AWS_REGION", "us-east-1"),
            access_key_id: var("AWS_ACCESS_KEY_ID", "testing"),
            secret_access_key: var("AWS_SECRET_ACCESS_KEY", "testing"),
        }
    }

    /// SDK configuration for this endpoint and these credentials.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(aws_config::Region::new(self.region.clone()))
            .credentials_provider(aws_credential_types::Credentials::new(
                &self.access_key_id,
                &self.secret_access_key,
                None,
                None,
                "manifold-localrt",
            ))
            .load()
            .await
    }
}

/// How the runtime starts functions.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where the built binaries are (`target/debug`, see [`binary_dir`]).
    pub bin_dir: PathBuf,
    /// Where each function's output goes.
    pub logs: Logs,
    /// Execution environments per function when its event source sets no MaximumConcurrency.
    pub default_concurrency: usize,
    /// Variables added to every function's environment on top of the template's. Empty unless a
    /// caller says why: the functions must start from the template alone.
    pub overrides: BTreeMap<String, String>,
}

/// Where the functions' stdout and stderr go.
#[derive(Debug, Clone)]
pub enum Logs {
    Discard,
    Stderr,
    /// One file per function in this directory (`<LogicalId>.log`).
    Dir(PathBuf),
}

impl Options {
    pub fn new(bin_dir: PathBuf) -> Self {
        Self { bin_dir, logs: Logs::Discard, default_concurrency: 1, overrides: BTreeMap::new() }
    }
}

/// The debug binaries of the workspace at `root`: `$CARGO_TARGET_DIR/debug` (relative to `root`
/// when relative), else `root/target/debug`.
pub fn binary_dir(root: &Path) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), |t| root.join(t));
    target.join("debug")
}

/// The template's functions, ready to start on the local stack.
#[derive(Debug)]
pub struct Runtime {
    pub template: Template,
    pub stack: Stack,
    pub aws: LocalAws,
    pub options: Options,
    /// By logical id.
    pub functions: BTreeMap<String, Arc<Function>>,
}

impl Runtime {
    /// Reads the transformed template at `template_path` and the stack `stack_name` from the local
    /// CloudFormation, and prepares every function (none is started yet).
    pub async fn load(
        template_path: &Path,
        stack_name: &str,
        aws: LocalAws,
        options: Options,
    ) -> Result<Self, RuntimeError> {
        let template = Template::load(template_path)?;
        let sdk = aws.sdk_config().await;
        let stack = Stack::describe(&aws_sdk_cloudformation::Client::new(&sdk), stack_name, template.clone()).await?;
        let concurrency: BTreeMap<String, usize> =
            template.sqs_mappings()?.into_iter().filter_map(|m| Some((m.function, m.maximum_concurrency?))).collect();
        let mut functions = BTreeMap::new();
        for spec in template.functions()? {
            let max = concurrency.get(&spec.logical_id).copied().unwrap_or(options.default_concurrency);
            let config = function_config(&spec, &stack, &aws, &options, max)?;
            functions.insert(spec.logical_id.clone(), Arc::new(Function::new(config)));
        }
        Ok(Self { template, stack, aws, options, functions })
    }

    pub fn function(&self, logical_id: &str) -> Option<&Arc<Function>> {
        self.functions.get(logical_id)
    }

    /// Stops every warm environment.
    pub fn shutdown(&self) {
        for f in self.functions.values() {
            f.shutdown();
        }
    }
}

/// The process configuration of one function: the template's variables resolved on `stack`, the
/// reserved variables Lambda sets, the local endpoint and credentials, then `options.overrides`.
pub fn function_config(
    spec: &template::FunctionSpec,
    stack: &Stack,
    aws: &LocalAws,
    options: &Options,
    max_concurrency: usize,
) -> Result<FunctionConfig, RuntimeError> {
    let mut env = BTreeMap::new();
    for (name, value) in &spec.variables {
        let resolved = stack.resolve(value).map_err(|source| RuntimeError::Variable {
            function: spec.logical_id.clone(),
            variable: name.clone(),
            source,
        })?;
        env.insert(name.clone(), resolved);
    }
    let name = stack.physical.get(&spec.logical_id).cloned().unwrap_or_else(|| spec.logical_id.clone());
    let arn = format!("arn:{}:lambda:{}:{}:function:{name}", stack.partition, stack.region, stack.account);
    let stream = format!("{}/[$LATEST]{}", chrono::Utc::now().format("%Y/%m/%d"), uuid::Uuid::new_v4().simple());
    let reserved = [
        ("AWS_LAMBDA_FUNCTION_NAME", name.clone()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", spec.memory_mb.to_string()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
        ("AWS_LAMBDA_LOG_STREAM_NAME", stream),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_owned()),
        ("AWS_REGION", stack.region.clone()),
        ("AWS_DEFAULT_REGION", stack.region.clone()),
        ("_HANDLER", spec.handler.clone()),
        ("TZ", ":UTC".to_owned()),
        ("LANG", "en_US.UTF-8".to_owned()),
        ("PATH", "/usr/local/bin:/usr/bin/:/bin:/opt/bin".to_owned()),
        // In AWS: the execution role's temporary credentials and the regional endpoints.
        ("AWS_ENDPOINT_URL", aws.endpoint.clone()),
        ("AWS_ACCESS_KEY_ID", aws.access_key_id.clone()),
        ("AWS_SECRET_ACCESS_KEY", aws.secret_access_key.clone()),
    ];
    for (k, v) in reserved {
        env.insert(k.to_owned(), v);
    }
    env.extend(options.overrides.clone());
    let logs = match &options.logs {
        Logs::Discard => LogSink::Discard,
        Logs::Stderr => LogSink::Stderr,
        Logs::Dir(dir) => LogSink::File(dir.join(format!("{}.log", spec.logical_id))),
    };
    Ok(FunctionConfig {
        logical_id: spec.logical_id.clone(),
        name,
        arn,
        // Absolute: the process starts in its own task root, where a relative path would not resolve.
        binary: std::path::absolute(options.bin_dir.join(&spec.binary))
            .unwrap_or_else(|_| options.bin_dir.join(&spec.binary)),
        timeout: spec.timeout,
        memory_mb: spec.memory_mb,
        handler: spec.handler.clone(),
        env,
        max_concurrency,
        logs,
    })
}
