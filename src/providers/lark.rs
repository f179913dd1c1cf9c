//! Lark (Feishu): Flux POSTs an interactive message card to the custom
//! bot's webhook: a header titled `💫 <kind>/<name>.<namespace>`
//! (`🚨` for errors) in the `turquoise` template (`red` for errors), and
//! one `lark_md` div holding the message in bold and a `key: value` line
//! per metadata entry. A text template replaces the message and the
//! metadata lines.
//!
//! Lark answers HTTP 200 with `{"code": <non-zero>, "msg"}` when it
//! refuses a message: herald fails those (Flux counts them delivered),
//! and retries its rate-limit codes.

use std::fmt::Write;
use std::sync::Arc;

use serde_json::{Value, json};

use super::{
    Body, Invalid, Notifier, Request, Response, Settings, ThreadAnchor, Verdict, judge_status,
    listed_metadata, message_text,
};
use crate::api::Severity;
use crate::notification::Notification;
use crate::template::Rendered;

/// Lark's "too many requests" codes.
const RATE_LIMITED: [i64; 2] = [9499, 11232];

pub struct Lark {
    settings: Settings,
}

pub fn new(settings: Settings) -> Result<Arc<dyn Notifier>, Invalid> {
    settings.address()?;
    Ok(Arc::new(Lark { settings }))
}

fn payload(n: &Notification, rendered: Option<&Rendered>) -> Value {
    let (emoji, color) = match n.event.severity {
        Severity::Error => ("🚨", "red"),
        _ => ("💫", "turquoise"),
    };
    let mut content = format!("**{}**\n\n", message_text(n, rendered));
    for (key, value) in listed_metadata(n, rendered) {
        let _ = writeln!(content, "{key}: {value}");
    }
    json!({
        "msg_type": "interactive",
        "card": {
            "config": {"wide_screen_mode": true},
            "header": {
                "title": {"tag": "plain_text", "content": format!("{emoji} {}", n.object_name())},
                "template": color,
            },
            "elements": [{
                "tag": "div",
                "text": {"tag": "lark_md", "content": content},
            }],
        },
    })
}

impl Notifier for Lark {
    fn settings(&self) -> &Settings {
        &self.settings
    }

    fn request(
        &self,
        n: &Notification,
        rendered: Option<&Rendered>,
        _thread: Option<&ThreadAnchor>,
    ) -> Result<Request, String> {
        let url = self.settings.address().map_err(|_| "no address")?;
        Ok(Request::post(url, Body::json(&payload(n, rendered))?))
    }

    fn judge(&self, response: &Response<'_>) -> Verdict {
        let verdict = judge_status(response);
        if verdict != Verdict::Delivered {
            return verdict;
        }
        let Ok(body) = serde_json::from_slice::<Value>(response.body) else {
            return verdict;
        };
        let code = body["code"]
            .as_i64()
            .or_else(|| body["StatusCode"].as_i64())
            .unwrap_or(0);
        if code == 0 {
            return Verdict::Delivered;
        }
        let msg = body["msg"]
            .as_str()
            .or_else(|| body["StatusMessage"].as_str())
            .unwrap_or("");
        let reason = format!("Lark refused the message: code {code}: {msg}");
        if RATE_LIMITED.contains(&code) {
            Verdict::Retry {
                reason,
                after: None,
            }
        } else {
            Verdict::Fail(reason)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::testing::notification;
    use reqwest::StatusCode;
    use reqwest::header::HeaderMap;

    #[test]
    fn the_card_has_a_heading_and_the_message() {
        let n = notification(Severity::Info, &[("revision", "r1")]);
        let card = payload(&n, None);
        assert_eq!(
            card["card"]["header"]["title"]["content"],
            "💫 kustomization/app.flux-system"
        );
        assert_eq!(card["card"]["header"]["template"], "turquoise");
        assert_eq!(
            card["card"]["elements"][0]["text"]["content"],
            "**Health check failed**\n\nrevision: r1\n"
        );
    }

    #[test]
    fn a_non_zero_code_in_a_200_is_a_failure() {
        let lark = new(Settings {
            address: Some(crate::mask::SecretString::new(
                "https://open.larksuite.com/x",
            )),
            ..Settings::default()
        })
        .expect("built");
        let headers = HeaderMap::new();
        let judge = |body: &[u8]| {
            lark.judge(&Response {
                status: StatusCode::OK,
                headers: &headers,
                body,
            })
        };
        assert_eq!(
            judge(
                br#"{"StatusCode":0,"StatusMessage":"success","code":0,"data":{},"msg":"success"}"#
            ),
            Verdict::Delivered
        );
        assert_eq!(judge(b""), Verdict::Delivered);
        assert!(matches!(
            judge(br#"{"code":19021,"data":{},"msg":"sign match fail"}"#),
            Verdict::Fail(_)
        ));
        assert!(matches!(
            judge(br#"{"code":9499,"msg":"Bad Request"}"#),
            Verdict::Retry { .. }
        ));
    }
}
