//! The host's declared targets (`hub.targets`, `hub.strict_targets`): pushes checked against
//! the JSON Schemas the host gave for their arguments.

use std::collections::BTreeMap;

use imgate_domain::ports::{HostTargets, TargetRefusal};
use imgate_domain::services::target_name_problem;
use jsonschema::paths::LocationSegment;
use jsonschema::Validator;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::backend::CHAT_TARGETS;
use crate::HubConfig;

/// One declared host target, as written under `hub.targets.<name>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TargetDeclaration {
    /// What the invocation tells the client; shown in the hub's contract.
    pub description: String,
    /// A JSON Schema per argument, in order; unset, any arguments are sent as they are.
    pub arguments: Option<Vec<Value>>,
}

/// A declaration with its schemas compiled.
struct Declared {
    name: String,
    validators: Option<Vec<Validator>>,
}

/// The declared targets, keyed by lower-case name: clients match targets ignoring case, so
/// `Notify` is checked as `notify` is.
pub struct DeclaredTargets {
    targets: BTreeMap<String, Declared>,
    strict: bool,
}

/// A declaration the gateway cannot use: the configuration key at fault and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct DeclarationError {
    /// The key, e.g. `hub.targets.orderShipped.arguments[0]`.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

impl DeclaredTargets {
    /// Compiles the declarations of `config`; a bad name or schema is an error naming its key.
    pub fn new(config: &HubConfig) -> Result<Self, DeclarationError> {
        let mut targets = BTreeMap::new();
        for (name, declaration) in &config.targets {
            let key = format!("hub.targets.{name}");
            let fail = |key: String, message: String| DeclarationError { key, message };
            if let Some(problem) = target_name_problem(name, &CHAT_TARGETS) {
                return Err(fail(key, problem));
            }
            let validators = match &declaration.arguments {
                None => None,
                Some(schemas) => Some(
                    schemas
                        .iter()
                        .enumerate()
                        .map(|(index, schema)| {
                            jsonschema::validator_for(schema).map_err(|err| {
                                fail(
                                    format!("{key}.arguments[{index}]"),
                                    format!("not a usable JSON Schema: {err}"),
                                )
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                ),
            };
            let declared = Declared {
                name: name.clone(),
                validators,
            };
            if let Some(other) = targets.insert(name.to_ascii_lowercase(), declared) {
                return Err(fail(
                    key,
                    format!(
                        "clients do not tell it from '{}': names match ignoring case",
                        other.name
                    ),
                ));
            }
        }
        Ok(Self {
            targets,
            strict: config.strict_targets,
        })
    }
}

impl HostTargets for DeclaredTargets {
    fn check(&self, target: &str, arguments: &RawValue) -> Result<(), TargetRefusal> {
        let Some(declared) = self.targets.get(&target.to_ascii_lowercase()) else {
            return if self.strict {
                Err(TargetRefusal::Undeclared)
            } else {
                Ok(())
            };
        };
        let Some(validators) = &declared.validators else {
            return Ok(());
        };
        let invalid = |path: String, message: String| TargetRefusal::Invalid { path, message };
        let arguments: Vec<Value> = serde_json::from_str(arguments.get())
            .map_err(|err| invalid("arguments".into(), format!("must be an array: {err}")))?;
        if arguments.len() != validators.len() {
            return Err(invalid(
                "arguments".into(),
                format!(
                    "'{}' takes {} argument(s), {} were given",
                    declared.name,
                    validators.len(),
                    arguments.len()
                ),
            ));
        }
        for (index, (argument, validator)) in arguments.iter().zip(validators).enumerate() {
            if let Err(err) = validator.validate(argument) {
                let mut path = format!("arguments[{index}]");
                for segment in err.instance_path().iter() {
                    match segment {
                        LocationSegment::Index(i) => path.push_str(&format!("[{i}]")),
                        LocationSegment::Property(name) => {
                            path.push('.');
                            path.push_str(&name);
                        }
                    }
                }
                return Err(invalid(path, err.to_string()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn targets(declared: Value, strict: bool) -> Result<DeclaredTargets, DeclarationError> {
        DeclaredTargets::new(&HubConfig {
            targets: serde_json::from_value(declared).unwrap(),
            strict_targets: strict,
            ..HubConfig::default()
        })
    }

    fn check(
        targets: &DeclaredTargets,
        target: &str,
        arguments: Value,
    ) -> Result<(), TargetRefusal> {
        let raw = RawValue::from_string(arguments.to_string()).unwrap();
        targets.check(target, &raw)
    }

    fn refusal(path: &str, message: &str) -> Result<(), TargetRefusal> {
        Err(TargetRefusal::Invalid {
            path: path.into(),
            message: message.into(),
        })
    }

    fn order_shipped() -> Value {
        json!({
            "orderShipped": {
                "description": "An order left the warehouse.",
                "arguments": [
                    {"type": "object", "required": ["orderId"], "properties": {
                        "orderId": {"type": "integer"},
                        "items": {"type": "array", "items": {"type": "string"}}
                    }},
                    {"type": "string", "format": "date-time"}
                ]
            },
            "ping": {}
        })
    }

    #[test]
    fn declared_arguments_are_checked_naming_the_path() {
        let targets = targets(order_shipped(), false).unwrap();
        let at = "2026-12-05T10:00:00Z";
        assert_eq!(
            check(&targets, "orderShipped", json!([{"orderId": 7}, at])),
            Ok(())
        );
        assert_eq!(
            check(&targets, "orderShipped", json!([{"orderId": "7"}, at])),
            refusal("arguments[0].orderId", r#""7" is not of type "integer""#)
        );
        assert_eq!(
            check(
                &targets,
                "orderShipped",
                json!([{"orderId": 7, "items": ["a", 2]}, at])
            ),
            refusal("arguments[0].items[1]", r#"2 is not of type "string""#)
        );
        assert_eq!(
            check(&targets, "orderShipped", json!([{}, at])),
            refusal("arguments[0]", r#""orderId" is a required property"#)
        );
        assert_eq!(
            check(&targets, "orderShipped", json!([{"orderId": 7}])),
            refusal(
                "arguments",
                "'orderShipped' takes 2 argument(s), 1 were given"
            )
        );
        // Clients match targets ignoring case, so the declaration holds for every casing.
        assert!(check(&targets, "ORDERSHIPPED", json!([{}, at])).is_err());
        // Declared without arguments, and undeclared: anything goes.
        assert_eq!(check(&targets, "ping", json!([1, {"a": null}])), Ok(()));
        assert_eq!(check(&targets, "other", json!([1])), Ok(()));
    }

    #[test]
    fn strict_targets_refuse_the_undeclared_only() {
        let targets = targets(order_shipped(), true).unwrap();
        assert_eq!(
            check(&targets, "other", json!([])),
            Err(TargetRefusal::Undeclared)
        );
        assert_eq!(check(&targets, "Ping", json!([])), Ok(()));
    }

    #[test]
    fn bad_declarations_name_their_key() {
        let error = |declared: Value| targets(declared, false).err().unwrap().to_string();
        assert!(error(json!({"typing": {}})).starts_with("hub.targets.typing: "));
        assert!(error(json!({"1x": {}})).starts_with("hub.targets.1x: "));
        assert!(error(json!({"a": {"arguments": [{}, {"type": 3}]}}))
            .starts_with("hub.targets.a.arguments[1]: not a usable JSON Schema"));
        assert!(
            error(json!({"a": {"arguments": [{"$ref": "https://example.com/s.json"}]}}))
                .starts_with("hub.targets.a.arguments[0]: ")
        );
        assert!(error(json!({"note": {}, "Note": {}})).contains("ignoring case"));
    }
}
