//! The REST/JSON facade: one generic handler over the endpoints the domains declare.
//!
//! Each endpoint names a service method and its proto request/response messages. The handler
//! builds the request message from path parameters, the query string (GET, DELETE) or the JSON
//! body, calls the very method gRPC calls, and writes the response message's JSON. List
//! responses become the seed's `{"count", "next", "previous", "results"}` page with absolute
//! URLs. Bad input is a 400 naming the field; nothing here knows any one resource.
//!
//! - [`endpoint`]: what an endpoint is (JSON operation, upload, download) and how one is declared;
//! - [`router`]: the axum routes and the generic handler;
//! - [`decode`]: building the request message, and the limits on reading a body;
//! - [`envelope`]: page and cursor envelopes;
//! - [`streams`]: multipart uploads and file downloads;
//! - [`descriptors`]: the proto descriptors, indexed once;
//! - [`openapi`]: the OpenAPI document; [`docs`]: the Swagger UI page.

pub mod decode;
pub mod descriptors;
pub mod docs;
pub mod endpoint;
pub mod envelope;
pub mod openapi;
pub mod router;
pub mod streams;

pub use decode::BodyTimeout;
pub use endpoint::{BodyShape, Download, Endpoint, FileDownload, IncomingFile, Operation, Upload};
pub use router::router;
