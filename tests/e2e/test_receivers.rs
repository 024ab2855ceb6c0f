//! The test receivers themselves, spoken to as a notifier will: a real SMTP conversation with
//! [`SmtpSink`] (by hand over TCP: the workspace has no SMTP client yet) and real HTTP requests to
//! [`WebhookReceiver`].

use std::time::Duration;

use base64::Engine as _;
use custos_testkit::{SmtpSink, WebhookReceiver};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A client side of an SMTP conversation: one command, one (possibly multi-line) reply.
struct Smtp {
    reader: BufReader<TcpStream>,
}

impl Smtp {
    /// Connects and reads the server's greeting (which must be 220).
    async fn connect(sink: &SmtpSink) -> Smtp {
        let stream = TcpStream::connect(("127.0.0.1", sink.port())).await.expect("connect to the SMTP sink");
        let mut smtp = Smtp { reader: BufReader::new(stream) };
        let (code, greeting) = smtp.reply().await;
        assert_eq!(code, 220, "{greeting}");
        smtp
    }

    /// The next reply: its code and all its text (`250-…` lines continue, `250 …` ends it).
    async fn reply(&mut self) -> (u16, String) {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).await.expect("read an SMTP reply");
            assert!(n > 0, "the SMTP sink closed the connection; so far: {text}");
            text.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                let code = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("bad reply {line:?}"));
                return (code, text);
            }
        }
    }

    /// Sends one line (CRLF added) and returns the reply.
    async fn send(&mut self, line: &str) -> (u16, String) {
        self.reader.get_mut().write_all(format!("{line}\r\n").as_bytes()).await.expect("write an SMTP command");
        self.reply().await
    }

    /// Sends `line` and asserts the reply's code.
    async fn expect(&mut self, line: &str, code: u16) -> String {
        let (got, text) = self.send(line).await;
        assert_eq!(got, code, "{line} -> {text}");
        text
    }
}

#[tokio::test]
async fn smtp_sink_receives_a_message_with_its_envelope_and_decoded_body() {
    let sink = SmtpSink::start().await;
    assert!(sink.url().starts_with("smtp://127.0.0.1:"), "{}", sink.url());
    assert!(sink.messages().await.is_empty());

    let mut smtp = Smtp::connect(&sink).await;
    smtp.expect("EHLO custos.test", 250).await;
    smtp.expect("MAIL FROM:<alerts@custos.test>", 250).await;
    smtp.expect("RCPT TO:<dpo@example.test>", 250).await;
    smtp.expect("RCPT TO:<ciso@example.test>", 250).await;
    smtp.expect("DATA", 354).await;
    // Quoted-printable, a folded header and a line starting with a dot (sent dot-stuffed).
    let message = "From: Custos <alerts@custos.test>\r\n\
                   To: dpo@example.test, ciso@example.test\r\n\
                   Subject: Incident INC-7 breached\r\n its 72-hour deadline\r\n\
                   MIME-Version: 1.0\r\n\
                   Content-Type: text/plain; charset=utf-8\r\n\
                   Content-Transfer-Encoding: quoted-printable\r\n\
                   \r\n\
                   Caf=C3=A9 ledger: the notification deadline has pa=\r\n\
                   ssed.\r\n\
                   ..end\r\n\
                   .";
    smtp.expect(message, 250).await;
    smtp.expect("QUIT", 221).await;

    let mail = sink.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(mail.len(), 1);
    let mail = &mail[0];
    assert_eq!(mail.from, "alerts@custos.test");
    assert_eq!(mail.to, ["dpo@example.test", "ciso@example.test"]);
    assert_eq!(mail.subject, "Incident INC-7 breached its 72-hour deadline");
    assert_eq!(mail.header("to"), Some("dpo@example.test, ciso@example.test"));
    assert_eq!(mail.header("From"), Some("Custos <alerts@custos.test>"));
    assert_eq!(mail.body, "Café ledger: the notification deadline has passed.\n.end\n");
    assert!(mail.raw.starts_with("X-Envelope-From: alerts@custos.test\r\n"), "{}", mail.raw);
}

#[tokio::test]
async fn smtp_sink_with_auth_refuses_wrong_credentials_and_accepts_the_right_ones() {
    let sink = SmtpSink::start_with(&["--auth", "custos:s3cret"]).await;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);

    let mut smtp = Smtp::connect(&sink).await;
    let ehlo = smtp.expect("EHLO custos.test", 250).await;
    assert!(ehlo.contains("AUTH") && ehlo.contains("PLAIN") && ehlo.contains("LOGIN"), "{ehlo}");
    // Without AUTH, no mail.
    smtp.expect("MAIL FROM:<alerts@custos.test>", 530).await;
    smtp.expect(&format!("AUTH PLAIN {}", b64("\0custos\0wrong")), 535).await;
    smtp.expect("AUTH LOGIN", 334).await;
    smtp.expect(&b64("custos"), 334).await;
    smtp.expect(&b64("wrong"), 535).await;
    smtp.expect(&format!("AUTH PLAIN {}", b64("\0custos\0s3cret")), 235).await;
    smtp.expect("MAIL FROM:<alerts@custos.test>", 250).await;
    smtp.expect("RCPT TO:<dpo@example.test>", 250).await;
    smtp.expect("DATA", 354).await;
    smtp.expect("Subject: authenticated\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8g\r\nd29ybGQ=\r\n.", 250)
        .await;
    smtp.expect("QUIT", 221).await;

    let mail = sink.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(mail[0].subject, "authenticated");
    assert_eq!(mail[0].body, "hello world");
}

#[tokio::test]
async fn webhook_receiver_records_requests_and_answers_with_the_status_set() {
    let hooks = WebhookReceiver::start().await;
    let client = reqwest::Client::new();
    let body = serde_json::json!({"event": "incident.deadline_breached", "id": "INC-7"});

    let res = client
        .post(format!("{}/hooks/custos?tenant=acme", hooks.url()))
        .header("X-Custos-Signature", "t=1,v1=abc")
        .json(&body)
        .send()
        .await
        .expect("POST to the webhook receiver");
    assert_eq!(res.status(), 200);

    let got = hooks.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].method, "POST");
    assert_eq!(got[0].path, "/hooks/custos?tenant=acme");
    assert_eq!(got[0].header("x-custos-signature"), Some("t=1,v1=abc"));
    assert_eq!(got[0].header("Content-Type"), Some("application/json"));
    assert_eq!(got[0].json(), body);

    hooks.set_status(500);
    let res = client.post(format!("{}/hooks/custos", hooks.url())).body("retry me").send().await.expect("POST");
    assert_eq!(res.status(), 500);
    let got = hooks.wait_for(2, Duration::from_secs(5)).await;
    assert_eq!(got[1].body, b"retry me");

    hooks.set_status(204);
    let res = client.put(format!("{}/other", hooks.url())).send().await.expect("PUT");
    assert_eq!(res.status(), 204);
    assert_eq!(hooks.requests().len(), 3);
}
