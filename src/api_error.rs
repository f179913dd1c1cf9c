//! Kubernetes API errors as an operator reads them: the API server's own
//! message and code, not kube-rs's debug rendering of its `Status`
//! (`Status { status: Some(Failure), code: 404, … }`), in Events, status
//! and logs alike.

/// The error's text for people.
pub fn describe(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if !status.message.is_empty() => {
            format!("{} (HTTP {})", status.message, status.code)
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_servers_message_not_a_debug_struct() {
        let status: kube::core::Status = serde_json::from_value(serde_json::json!({
            "status": "Failure",
            "message": "gitrepositories.source.toolkit.fluxcd.io \"absent\" not found",
            "reason": "NotFound",
            "code": 404
        }))
        .expect("status");
        let text = describe(&kube::Error::Api(Box::new(status)));
        assert_eq!(
            text,
            "gitrepositories.source.toolkit.fluxcd.io \"absent\" not found (HTTP 404)"
        );
        assert!(!text.contains("Status {"), "{text}");
    }
}
