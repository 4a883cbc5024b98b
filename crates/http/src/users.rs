//! `/api/v1/users/{id}`: the host back end mirrors its users into the provider.

use actix_web::{web, HttpResponse};
use imgate_domain::ids::WHITE_SPACE_CHARS;
use imgate_domain::model::{Upserted, User, UserProfile};
use imgate_domain::services::{UserError, UserService};
use imgate_domain::Password;
use serde::Deserialize;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;

use crate::auth::HostBackend;
use crate::error::{ApiError, ErrorBody};
use crate::json::Json;
use crate::params::{self, Id};

/// The body of `PUT /api/v1/users/{id}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpsertUser {
    /// Preferred username.
    #[schema(schema_with = username)]
    pub username: String,
    /// Display name.
    #[schema(schema_with = display_name)]
    pub name: String,
    /// E-mail address; one is made up when absent.
    #[serde(default)]
    #[schema(schema_with = email)]
    pub email: Option<String>,
    /// The user's provider password; the configured default when absent.
    #[serde(default)]
    #[schema(schema_with = password)]
    pub password: Option<String>,
}

/// The longest `username` and `name`, in characters as sent.
pub const MAX_NAME_LEN: usize = 120;
/// The shortest `password`, in characters.
pub const MIN_PASSWORD_LEN: usize = 8;

/// `username` and `name` as [`UpsertUser::validate`] checks them.
fn name_schema(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(format!(
            "{description}: 1 to {MAX_NAME_LEN} characters as sent, no control characters; \
             white space around it is dropped."
        )))
        .min_length(Some(1))
        .max_length(Some(MAX_NAME_LEN))
        .pattern(Some(params::trimmed_name_pattern()))
}

fn username() -> ObjectBuilder {
    name_schema("The user's handle as the host shows it")
}

fn display_name() -> ObjectBuilder {
    name_schema("Display name")
}

/// What [`looks_like_email`] accepts once white space around the address is dropped: no
/// white space, something before the first `@`, and after it a domain with a dot that
/// neither starts nor ends it.
fn email_pattern() -> String {
    let ws = WHITE_SPACE_CHARS;
    format!("^[{ws}]*[^{ws}@]+@[^{ws}.][^{ws}]*\\.[^{ws}]*[^{ws}.][{ws}]*$")
}

fn email() -> RefOr<Schema> {
    params::nullable(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "E-mail address, checked loosely; one is made up when absent.",
            ))
            .pattern(Some(email_pattern())),
    )
}

fn password() -> RefOr<Schema> {
    params::nullable(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(format!(
                "The user's provider password, at least {MIN_PASSWORD_LEN} characters; the \
                 configured default when absent."
            )))
            .min_length(Some(MIN_PASSWORD_LEN)),
    )
}

impl UpsertUser {
    /// The profile and password to mirror, or which field is wrong.
    pub(crate) fn validate(self) -> Result<(UserProfile, Option<Password>), ApiError> {
        let text = |field: &str, raw: String| {
            let value = raw.trim().to_owned();
            if value.is_empty() {
                Err(ApiError::Invalid(format!("{field}: must not be empty")))
            } else if raw.chars().count() > MAX_NAME_LEN {
                // As sent, as the document's `maxLength` counts.
                Err(ApiError::Invalid(format!(
                    "{field}: must be at most {MAX_NAME_LEN} characters"
                )))
            } else if value.chars().any(char::is_control) {
                Err(ApiError::Invalid(format!(
                    "{field}: must not contain control characters"
                )))
            } else {
                Ok(value)
            }
        };
        let email = match self.email.map(|e| e.trim().to_owned()) {
            Some(email) if !looks_like_email(&email) => {
                return Err(ApiError::Invalid("email: not an e-mail address".into()))
            }
            other => other,
        };
        let password = match self.password {
            Some(p) if p.chars().count() < MIN_PASSWORD_LEN => {
                return Err(ApiError::Invalid(format!(
                    "password: must be at least {MIN_PASSWORD_LEN} characters"
                )))
            }
            other => other.map(Password::new),
        };
        Ok((
            UserProfile {
                username: text("username", self.username)?,
                name: text("name", self.name)?,
                email,
            },
            password,
        ))
    }
}

fn looks_like_email(email: &str) -> bool {
    match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !email.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

impl From<UserError> for ApiError {
    fn from(err: UserError) -> Self {
        match err {
            UserError::Admin(err) => err.into(),
            UserError::Provider(err) => err.into(),
            UserError::Cache(err) => err.into(),
        }
    }
}

/// Creates or updates a mirrored user; idempotent.
#[utoipa::path(put, path = "/api/v1/users/{id}", operation_id = "upsertUser", tag = "users",
    params(("id" = Id, Path, description = "The host's user id")),
    request_body = UpsertUser,
    security(("api_key" = []), ("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = User),
        (status = 200, description = "Updated", body = User),
        (status = 409, description = "The e-mail address belongs to another account", body = ErrorBody),
        (status = 503, description = "The provider is unavailable, or the store of chosen passwords is; repeat the upsert", body = ErrorBody)))]
pub async fn upsert(
    _: HostBackend,
    users: web::Data<UserService>,
    id: web::Path<String>,
    body: Json<UpsertUser>,
) -> Result<HttpResponse, ApiError> {
    let id = params::user("id", &id)?;
    let (profile, password) = body.into_inner().validate()?;
    let (user, upserted) = users.upsert(&id, &profile, password).await?;
    Ok(match upserted {
        Upserted::Created => HttpResponse::Created().json(user),
        Upserted::Updated => HttpResponse::Ok().json(user),
    })
}

/// Reads a mirrored user.
#[utoipa::path(get, path = "/api/v1/users/{id}", operation_id = "getUser", tag = "users",
    params(("id" = Id, Path, description = "The host's user id")),
    security(("api_key" = []), ("bearer" = [])),
    responses(
        (status = 200, body = User),
        (status = 404, description = "No such user", body = ErrorBody)))]
pub async fn get(
    _: HostBackend,
    users: web::Data<UserService>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = params::user("id", &id)?;
    Ok(HttpResponse::Ok().json(users.get(&id).await?))
}

/// Deletes a mirrored user, their cached session and their upstream connection.
#[utoipa::path(delete, path = "/api/v1/users/{id}", operation_id = "deleteUser", tag = "users",
    params(("id" = Id, Path, description = "The host's user id")),
    security(("api_key" = []), ("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such user", body = ErrorBody)))]
pub async fn delete(
    _: HostBackend,
    users: web::Data<UserService>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = params::user("id", &id)?;
    users.delete(&id).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e_mail_addresses_are_checked_loosely() {
        for good in ["a@b.io", "first.last+tag@example.co.uk"] {
            assert!(looks_like_email(good), "{good}");
        }
        for bad in ["", "a", "a@b", "@b.io", "a@.io", "a@b.", "a b@c.io"] {
            assert!(!looks_like_email(bad), "{bad}");
        }
    }
}
