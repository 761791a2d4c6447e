//! The local stack as CloudFormation created it in moto (`infra/local/stack.py create`): physical ids,
//! parameters and outputs, and the resolution of the template's intrinsics (`Ref`, `Fn::GetAtt`,
//! `Fn::Sub`, `Fn::Join`) to them, as CloudFormation resolves them when it deploys.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::template::{Template, scalar};

/// What a value of the template cannot be resolved to on this stack.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("cannot describe stack {stack}: {message} (create it with infra/local/stack.py create {stack})")]
    Describe { stack: String, message: String },
    #[error("{0}")]
    Unresolvable(String),
}

/// The names of one created stack.
#[derive(Debug, Clone)]
pub struct Stack {
    pub name: String,
    pub region: String,
    pub account: String,
    pub partition: String,
    /// Logical id -> physical id (table name, queue URL, function name...).
    pub physical: BTreeMap<String, String>,
    pub parameters: BTreeMap<String, String>,
    pub outputs: BTreeMap<String, String>,
    pub template: Template,
}

impl Stack {
    /// Reads the stack `name` from CloudFormation (moto locally) for `template`.
    pub async fn describe(
        cfn: &aws_sdk_cloudformation::Client,
        name: &str,
        template: Template,
    ) -> Result<Self, ResolveError> {
        let err = |e: &dyn std::fmt::Display| ResolveError::Describe { stack: name.to_owned(), message: e.to_string() };
        let described =
            cfn.describe_stacks().stack_name(name).send().await.map_err(|e| err(&e.into_service_error()))?;
        let stack = described.stacks().first().ok_or_else(|| err(&"no such stack"))?;
        let parameters = stack
            .parameters()
            .iter()
            .filter_map(|p| Some((p.parameter_key()?.to_owned(), p.parameter_value().unwrap_or_default().to_owned())))
            .collect();
        let outputs = stack
            .outputs()
            .iter()
            .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value().unwrap_or_default().to_owned())))
            .collect();
        let account = stack
            .stack_id()
            .and_then(|id| id.split(':').nth(4))
            .filter(|a| !a.is_empty())
            .unwrap_or("123456789012")
            .to_owned();
        let resources =
            cfn.describe_stack_resources().stack_name(name).send().await.map_err(|e| err(&e.into_service_error()))?;
        let physical = resources
            .stack_resources()
            .iter()
            .filter_map(|r| Some((r.logical_resource_id()?.to_owned(), r.physical_resource_id()?.to_owned())))
            .filter(|(_, p)| !p.is_empty())
            .collect();
        let region = cfn.config().region().map_or_else(|| "us-east-1".to_owned(), ToString::to_string);
        Ok(Self {
            name: name.to_owned(),
            region,
            account,
            partition: "aws".to_owned(),
            physical,
            parameters,
            outputs,
            template,
        })
    }

    /// A queue's URL (its physical id).
    pub fn queue_url(&self, logical_id: &str) -> Result<String, ResolveError> {
        self.reference(logical_id)
    }

    /// Resolves a template value to the string CloudFormation would give it on this stack.
    pub fn resolve(&self, value: &Value) -> Result<String, ResolveError> {
        match value {
            Value::Object(map) if map.len() == 1 => {
                let (key, arg) = map.iter().next().map_or(("", &Value::Null), |(k, v)| (k.as_str(), v));
                match key {
                    "Ref" => self.reference(arg.as_str().unwrap_or_default()),
                    "Fn::GetAtt" => {
                        let (id, attr) = match arg {
                            Value::Array(parts) => (
                                parts.first().and_then(Value::as_str).unwrap_or_default().to_owned(),
                                parts.get(1).and_then(Value::as_str).unwrap_or_default().to_owned(),
                            ),
                            Value::String(s) => {
                                let (a, b) = s.split_once('.').unwrap_or((s, ""));
                                (a.to_owned(), b.to_owned())
                            }
                            _ => (String::new(), String::new()),
                        };
                        self.attribute(&id, &attr)
                    }
                    "Fn::Sub" => match arg {
                        Value::String(text) => self.substitute(text, &BTreeMap::new()),
                        Value::Array(parts) => {
                            let text = parts.first().and_then(Value::as_str).unwrap_or_default();
                            let mut vars = BTreeMap::new();
                            for (k, v) in parts.get(1).and_then(Value::as_object).into_iter().flatten() {
                                vars.insert(k.clone(), self.resolve(v)?);
                            }
                            self.substitute(text, &vars)
                        }
                        other => Err(ResolveError::Unresolvable(format!("Fn::Sub of {other}"))),
                    },
                    "Fn::Join" => {
                        let delimiter = arg[0].as_str().unwrap_or_default();
                        let parts: Result<Vec<String>, _> =
                            arg[1].as_array().into_iter().flatten().map(|v| self.resolve(v)).collect();
                        Ok(parts?.join(delimiter))
                    }
                    other => Err(ResolveError::Unresolvable(format!("{other} is not resolved locally: {value}"))),
                }
            }
            Value::Object(_) | Value::Array(_) => Err(ResolveError::Unresolvable(format!("not a scalar: {value}"))),
            other => Ok(scalar(other)),
        }
    }

    /// `Ref`: a pseudo parameter, a parameter, or a resource's physical id.
    pub fn reference(&self, name: &str) -> Result<String, ResolveError> {
        let pseudo = match name {
            "AWS::Region" => Some(self.region.clone()),
            "AWS::AccountId" => Some(self.account.clone()),
            "AWS::Partition" => Some(self.partition.clone()),
            "AWS::StackName" => Some(self.name.clone()),
            "AWS::URLSuffix" => Some("amazonaws.com".to_owned()),
            "AWS::StackId" => Some(format!(
                "arn:{}:cloudformation:{}:{}:stack/{}/local",
                self.partition, self.region, self.account, self.name
            )),
            _ => None,
        };
        if let Some(v) = pseudo {
            return Ok(v);
        }
        if let Some(v) = self.parameters.get(name) {
            return Ok(v.clone());
        }
        if self.template.raw["Parameters"].get(name).is_some() {
            return self
                .template
                .parameter_default(name)
                .ok_or_else(|| ResolveError::Unresolvable(format!("parameter {name} has no value")));
        }
        if let Some(v) = self.physical.get(name) {
            return Ok(v.clone());
        }
        // Resources moto creates without a physical id (the event bus) are named by their Name property.
        if let Some(named) = self.template.resource(name).and_then(|r| r["Properties"].get("Name")) {
            return self.resolve(named);
        }
        Err(ResolveError::Unresolvable(format!(
            "Ref {name}: no such parameter, and stack {} has no physical id for it (not created locally?)",
            self.name
        )))
    }

    /// `Fn::GetAtt`, for the resource types the template uses.
    pub fn attribute(&self, id: &str, attr: &str) -> Result<String, ResolveError> {
        let kind = self.template.resource_type(id).unwrap_or_default().to_owned();
        let (p, r, a) = (&self.partition, &self.region, &self.account);
        let physical = || self.reference(id);
        let last = |s: String| s.rsplit('/').next().unwrap_or_default().to_owned();
        let value = match (kind.as_str(), attr) {
            ("AWS::SQS::Queue", "Arn") => format!("arn:{p}:sqs:{r}:{a}:{}", last(physical()?)),
            ("AWS::SQS::Queue", "QueueName") => last(physical()?),
            ("AWS::DynamoDB::Table", "Arn") => format!("arn:{p}:dynamodb:{r}:{a}:table/{}", physical()?),
            ("AWS::Events::EventBus", "Arn") => format!("arn:{p}:events:{r}:{a}:event-bus/{}", physical()?),
            ("AWS::Events::Rule", "Arn") => format!("arn:{p}:events:{r}:{a}:rule/{}", physical()?),
            ("AWS::Lambda::Function", "Arn") => format!("arn:{p}:lambda:{r}:{a}:function:{}", physical()?),
            ("AWS::IAM::Role", "Arn") => format!("arn:{p}:iam::{a}:role/{}", physical()?),
            ("AWS::S3::Bucket", "Arn") => format!("arn:{p}:s3:::{}", physical()?),
            ("AWS::SNS::Topic", "TopicName") => physical()?.rsplit(':').next().unwrap_or_default().to_owned(),
            ("AWS::SQS::Queue", "QueueUrl") | ("AWS::Events::EventBus", "Name") | ("AWS::SNS::Topic", "TopicArn") => {
                physical()?
            }
            ("AWS::Logs::LogGroup", "Arn") => format!("arn:{p}:logs:{r}:{a}:log-group:{}:*", physical()?),
            _ => {
                return Err(ResolveError::Unresolvable(format!(
                    "Fn::GetAtt {id}.{attr} ({}) is not resolved locally",
                    if kind.is_empty() { "no such resource" } else { &kind }
                )));
            }
        };
        Ok(value)
    }

    /// `Fn::Sub`: `${Name}`, `${Name.Attr}`, `${AWS::Region}`; `${!Literal}` stays `${Literal}`.
    fn substitute(&self, text: &str, vars: &BTreeMap<String, String>) -> Result<String, ResolveError> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find('}').ok_or_else(|| ResolveError::Unresolvable(format!("Fn::Sub {text:?}")))?;
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else if let Some(v) = vars.get(name) {
                out.push_str(v);
            } else if let Some((id, attr)) = name.split_once('.').filter(|_| !name.starts_with("AWS::")) {
                out.push_str(&self.attribute(id, attr)?);
            } else {
                out.push_str(&self.reference(name)?);
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}
