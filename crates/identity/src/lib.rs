//! Identity and tenancy: organisations, users with one of four roles, API tokens (stored hashed)
//! and bearer JWTs from an SSO provider.
//!
//! [`service::IdentityService`] holds the operations (the CLI and the gateway call the same ones),
//! the administration of users and tokens among them ([`admin`]); access reviews ([`reviews`]:
//! stale-access findings, their decisions and sign-off);
//! [`auth::Authenticator`] turns an `Authorization` header into a [`custos_core::RequestCtx`];
//! [`grpc`] is the thin tonic adapter.

pub mod admin;
pub mod auth;
pub mod grpc;
pub mod model;
pub mod reviews;
pub mod service;

pub use auth::{Attempt, Authenticator, CredentialChanges, JwtConfig, JwtKey, Principal};
pub use service::{IdentityError, IdentityService, IssuedToken, Organization};
