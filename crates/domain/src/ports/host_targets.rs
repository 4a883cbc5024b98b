//! `HostTargets`: the targets the host declared, and what their arguments must look like.

use serde_json::value::RawValue;

/// Why a host invocation does not fit the declared targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetRefusal {
    /// Only declared targets may be sent, and this one is not.
    Undeclared,
    /// An argument does not match its declaration.
    Invalid {
        /// Where, from `arguments`: `arguments`, `arguments[0]`, `arguments[1].orderId`.
        path: String,
        /// What is wrong there.
        message: String,
    },
}

/// The host's declared targets; the hub implements it from its configuration.
///
/// Contract: `check` is called with a well-formed target name and a JSON array. A declared
/// target's arguments are checked against its declaration; an undeclared target passes unless
/// only declared targets may be sent. It does no IO.
pub trait HostTargets: Send + Sync {
    /// Whether `target(...arguments)` may be sent.
    fn check(&self, target: &str, arguments: &RawValue) -> Result<(), TargetRefusal>;
}

/// No declared targets: every well-formed target with any arguments may be sent.
pub struct AnyTargets;

impl HostTargets for AnyTargets {
    fn check(&self, _: &str, _: &RawValue) -> Result<(), TargetRefusal> {
        Ok(())
    }
}
