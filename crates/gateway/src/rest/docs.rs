//! The interactive API documentation at `/api/docs/`: Swagger UI, vendored under `assets/` so it
//! works with no internet access.

use axum::Router;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use http::header;

const BUNDLE: &[u8] = include_bytes!("../../assets/swagger-ui/swagger-ui-bundle.js");
const CSS: &[u8] = include_bytes!("../../assets/swagger-ui/swagger-ui.css");

const PAGE: &str = r##"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Custos API</title>
  <link rel="stylesheet" href="/api/docs/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/api/docs/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({ url: "/api/schema/", dom_id: "#swagger-ui", persistAuthorization: true });
  </script>
</body>
</html>"##;

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/api/docs/", get(|| async { Html(PAGE) }))
        .route("/api/docs", get(|| async { axum::response::Redirect::permanent("/api/docs/") }))
        .route(
            "/api/docs/swagger-ui-bundle.js",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "application/javascript"),
                        (header::CACHE_CONTROL, "public, max-age=86400"),
                    ],
                    BUNDLE,
                )
                    .into_response()
            }),
        )
        .route(
            "/api/docs/swagger-ui.css",
            get(|| async {
                ([(header::CONTENT_TYPE, "text/css"), (header::CACHE_CONTROL, "public, max-age=86400")], CSS)
                    .into_response()
            }),
        )
}
