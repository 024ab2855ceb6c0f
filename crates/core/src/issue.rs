//! One problem of a document a person or another tool wrote (an OSCAL catalog, a framework
//! library, a policy), located as precisely as its format allows: a path into the document (a
//! JSON path such as `$.catalog.groups[3].controls[2].id`, or a YAML node's path), and the line
//! and column when known. Readers report every issue of a document at once; the API answers
//! them in a 422's `details`.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{}{}: {message}", path.as_deref().unwrap_or("(document)"), at(*.line, *.column))]
pub struct Issue {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    pub message: String,
}

fn at(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(" (line {l}, column {c})"),
        (Some(l), None) => format!(" (line {l})"),
        _ => String::new(),
    }
}

impl Issue {
    pub fn new(message: impl Into<String>) -> Issue {
        Issue { path: None, line: None, column: None, message: message.into() }
    }

    /// Where in the document.
    pub fn at(mut self, path: impl Into<String>) -> Issue {
        self.path = Some(path.into());
        self
    }

    /// Its line and column (1-based).
    pub fn position(mut self, line: usize, column: usize) -> Issue {
        self.line = Some(line);
        self.column = Some(column);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::Issue;

    #[test]
    fn an_issue_says_where_and_what() {
        let i = Issue::new("must be a token").at("$.catalog.controls[0].id").position(12, 7);
        assert_eq!(i.to_string(), "$.catalog.controls[0].id (line 12, column 7): must be a token");
        assert_eq!(Issue::new("empty").to_string(), "(document): empty");
        let json = serde_json::to_value(Issue::new("x").at("$.a")).unwrap();
        assert_eq!(json, serde_json::json!({"path": "$.a", "message": "x"}));
    }
}
